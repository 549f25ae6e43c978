//! Seeding a scenario end to end: network in moto, IP accounting, nodes
//! (instances with addresses chosen by the IPAM), pod placement, the CNI's
//! ENI layout per node (mirrored into moto as ENIs and secondary
//! addresses), the EKS model, and every Kubernetes object, loaded in bulk.
//!
//! [`seed`] runs the steps in order; `nodes` owns the network, nodes,
//! instances and ENIs, `workloads` what pods there are and where they go,
//! `eks_model` the EKS model and `kube_objects` the Kubernetes objects.

mod eks_model;
mod kube_objects;
mod nodes;
mod planned;
pub mod self_managed;
mod workloads;

use aws_sdk_ec2::Client;
use serde_json::{Value, json};

use super::ec2::SeedError;
use super::objects as obj;
use super::{Scenario, World};
use crate::eks::Eks;
use crate::ipam::{Ipam, WarmConfig};
use crate::kube::resources::POD;
use crate::kube::{ApiError, Store, WriteOptions};
use crate::workloads::{suffix, template_hash};

/// The account every sandbox resource lives in (moto's default).
pub const ACCOUNT: &str = "123456789012";

pub struct SeedInput<'a> {
    pub scenario: &'a Scenario,
    /// moto; `None` seeds without any EC2 (ids are made up), for benches.
    pub ec2: Option<&'a Client>,
    pub store: &'a Store,
    pub eks: &'a Eks,
    /// What DescribeCluster reports as the endpoint.
    pub kube_endpoint: &'a str,
    /// What DescribeCluster reports as `certificateAuthority.data`: the
    /// cluster CA's PEM, base64-encoded.
    pub certificate_authority: &'a str,
    /// Where the self-managed groups' Auto Scaling groups go.
    pub autoscaling: &'a crate::autoscaling::Groups,
}

pub struct Seeded {
    pub world: World,
    pub ipam: Ipam,
}

fn create(store: &Store, rt: usize, v: Value) -> Result<std::sync::Arc<crate::kube::Stored>, ApiError> {
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    store.create(rt, &ns, v, &WriteOptions::internal())
}

/// Create a pod, retrying the name on the rare suffix collision.
fn create_pod(store: &Store, base: &str, seed: &str, mut build: impl FnMut(&str) -> Value) -> Result<(), ApiError> {
    for attempt in 0..20 {
        let name = format!("{base}-{}", suffix(&format!("{seed}/{attempt}")));
        match create(store, POD, build(&name)) {
            Err(e) if e.code == 409 => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(ApiError::internal(format!("could not name a pod of {base}")))
}

pub async fn seed(input: SeedInput<'_>) -> Result<Seeded, SeedError> {
    let s = input.scenario;
    let moto = input.ec2;
    let join = super::self_managed::Join {
        cluster: &s.cluster,
        endpoint: input.kube_endpoint,
        ca: input.certificate_authority,
        service_cidr: &s.service_cidr,
    };
    let (mut world, mut ipam) = nodes::network(s, moto, &join).await?;
    let mut planned = nodes::plan_nodes(s, &world, &mut ipam)?;
    nodes::launch_instances(s, moto, &world, &mut planned).await?;
    self_managed::register(s, &world, &planned, input.autoscaling);

    // Workloads and placement.
    let aws_node_env = obj::aws_node_env_for(s, &world);
    let warm = {
        let pairs = obj::env_pairs(&aws_node_env);
        WarmConfig::from_env(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    };
    let mut slots = workloads::slots(s, &planned);
    let any_managed = slots.iter().any(|s| s.managed);
    let workloads = workloads::workloads(s, &world, any_managed);
    let per_node = workloads::place_pods(&mut slots, &workloads, planned.len())?;

    // Addresses: the CNI's ENI layout on every node.
    let (eni_plans, pod_ips) = nodes::layout_enis(s, &mut planned, &per_node, &workloads, warm, &mut ipam)?;
    nodes::attach_enis(s, moto, &world, &mut planned, &eni_plans).await?;

    eks_model::seed_eks(&input, &world)?;

    // Kubernetes.
    let store = input.store;
    store.bulk(|| kube_objects::objects(store, s, &world, &planned, &workloads, &per_node, &pod_ips))?;

    nodes::record_pod_ips(store, &mut planned);
    world.nodes = planned.into_iter().map(|p| p.info).collect();
    Ok(Seeded { world, ipam })
}

/// The Auto Scaling group EKS names for a managed node group.
pub fn asg_name(nodegroup: &str) -> String {
    let h = template_hash(&json!(["asg", nodegroup]));
    let u = uuid::Uuid::from_u128(
        u128::from_str_radix(
            &format!(
                "{:0>32}",
                h.bytes().map(|b| format!("{:x}", b % 16)).collect::<String>()
            ),
            16,
        )
        .unwrap_or(0),
    );
    format!("eks-{nodegroup}-{u}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asg_names_are_stable() {
        assert_eq!(asg_name("x"), asg_name("x"));
        assert!(asg_name("podnet-demo-system").starts_with("eks-podnet-demo-system-"));
    }
}
