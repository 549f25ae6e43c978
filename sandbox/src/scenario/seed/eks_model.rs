//! The seed's EKS model: the cluster as DescribeCluster reports it, one
//! managed node group per scenario node group, and the vpc-cni, kube-proxy
//! and CoreDNS add-ons.

use std::collections::BTreeMap;

use serde_json::json;

use super::{ACCOUNT, SeedInput, asg_name};
use crate::eks::{Addon, Cluster, LaunchTemplateRef, Nodegroup, epoch_now};
use crate::scenario::World;
use crate::scenario::ec2::SeedError;
use crate::scenario::objects as obj;
use crate::workloads::template_hash;

/// A day in EKS timestamps (seconds).
const DAY: f64 = 86_400.0;

/// The EKS model of the seeded cluster.
pub(super) fn seed_eks(input: &SeedInput<'_>, world: &World) -> Result<(), SeedError> {
    add_cluster(input, world);
    add_nodegroups(input, world)?;
    add_addons(input)
}

fn add_cluster(input: &SeedInput<'_>, world: &World) {
    let s = input.scenario;
    let cluster_sg = world.security_groups.get("cluster").cloned().unwrap_or_default();
    input.eks.add_cluster(Cluster {
        name: s.cluster.clone(),
        arn: input.eks.arn(&format!("cluster/{}", s.cluster)),
        created_at: epoch_now() - 30.0 * DAY,
        version: s.kubernetes_version.clone(),
        platform_version: "eks.16".into(),
        endpoint: input.kube_endpoint.to_string(),
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/{}-cluster", s.cluster),
        vpc_id: world.vpc_id.clone(),
        subnet_ids: world.zones.iter().map(|z| z.private_subnet.clone()).collect(),
        security_group_ids: vec![cluster_sg.clone()],
        cluster_security_group_id: cluster_sg,
        service_ipv4_cidr: s.service_cidr.clone(),
        ip_family: s.ip_family.clone().unwrap_or_else(|| "ipv4".into()),
        auto_mode: s.auto_mode,
        certificate_authority: input.certificate_authority.to_string(),
        oidc_issuer: format!(
            "https://oidc.eks.{}.amazonaws.com/id/{}",
            s.region,
            template_hash(&json!(["oidc", s.cluster])).to_uppercase()
        ),
        tags: BTreeMap::from([("Environment".to_string(), "demo".to_string())]),
    });
}

fn add_nodegroups(input: &SeedInput<'_>, world: &World) -> Result<(), SeedError> {
    let s = input.scenario;
    for g in &s.node_groups {
        let zones: Vec<String> = g
            .zones
            .clone()
            .unwrap_or_else(|| s.zones.iter().map(|z| z.name.clone()).collect());
        let subnets = world
            .zones
            .iter()
            .filter(|z| zones.contains(&z.name))
            .map(|z| z.private_subnet.clone())
            .collect();
        let lt = world.launch_templates.get(&g.name).map(|(id, v)| LaunchTemplateRef {
            name: format!("{}-20241104021139", g.name),
            id: id.clone(),
            version: v.clone(),
        });
        input.eks.add_nodegroup(
            &s.cluster,
            Nodegroup {
                name: g.name.clone(),
                arn: input
                    .eks
                    .arn(&format!("nodegroup/{}/{}/{}", s.cluster, g.name, uuid::Uuid::new_v4())),
                created_at: epoch_now() - 20.0 * DAY,
                modified_at: epoch_now() - 20.0 * DAY,
                version: s.kubernetes_version.clone(),
                release_version: obj::RELEASE_VERSION.into(),
                status: "ACTIVE".into(),
                capacity_type: "ON_DEMAND".into(),
                min_size: i64::from(g.min_size.unwrap_or(g.size)),
                max_size: i64::from(g.max_size.unwrap_or(g.size.max(1))),
                desired_size: i64::from(g.size),
                instance_types: vec![g.instance_type.clone()],
                subnets,
                ami_type: g.ami_type.clone(),
                node_role: format!("arn:aws:iam::{ACCOUNT}:role/{}-node", s.cluster),
                labels: BTreeMap::new(),
                // EKS's form of the taint its Windows nodes carry.
                taints: if s.is_windows_group(&g.name) {
                    vec![serde_json::json!({"key": "os", "value": "windows", "effect": "NO_SCHEDULE"})]
                } else {
                    Vec::new()
                },
                launch_template: lt,
                asg_name: asg_name(&g.name),
                max_unavailable: 1,
                tags: BTreeMap::new(),
            },
        )?;
    }
    Ok(())
}

fn add_addons(input: &SeedInput<'_>) -> Result<(), SeedError> {
    let s = input.scenario;
    let addon = |name: &str, version: &str, config: Option<String>, role: Option<String>| Addon {
        name: name.to_string(),
        version: version.to_string(),
        status: "ACTIVE".into(),
        arn: input
            .eks
            .arn(&format!("addon/{}/{name}/{}", s.cluster, uuid::Uuid::new_v4())),
        created_at: epoch_now() - 30.0 * DAY,
        modified_at: epoch_now() - 10.0 * DAY,
        configuration_values: config,
        service_account_role_arn: role,
    };
    input.eks.add_addon(
        &s.cluster,
        addon(
            "vpc-cni",
            &s.vpc_cni.version,
            s.vpc_cni.configuration_values.clone(),
            Some(format!("arn:aws:iam::{ACCOUNT}:role/{}-vpc-cni", s.cluster)),
        ),
    )?;
    input
        .eks
        .add_addon(&s.cluster, addon("kube-proxy", "v1.31.3-eksbuild.2", None, None))?;
    input
        .eks
        .add_addon(&s.cluster, addon("coredns", "v1.11.4-eksbuild.2", None, None))?;
    Ok(())
}
