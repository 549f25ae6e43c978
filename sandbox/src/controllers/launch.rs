//! Instances coming and going, for Karpenter and managed node groups alike:
//! an address chosen by the sandbox's IPAM, `RunInstances` in moto, the Node
//! registering after the simulated boot delay (NotReady until its CNI
//! starts), and termination — drained elsewhere — giving every address back.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::ipamd::{Eni, NodeNet};
use super::{Ctx, edit};
use crate::instance_types;
use crate::ipam::SubnetPool;
use crate::kube::ops::now_rfc3339;
use crate::kube::resources::{LEASE, NODE};
use crate::kube::{DeleteOptions, WriteOptions};
use crate::scenario::ec2::{self, NodeLaunch};
use crate::scenario::objects::{self, NodeOrigin};
use crate::scenario::{EniInfo, NodeInfo, node_name};

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub zone: String,
    pub subnet_id: String,
    pub instance_type: String,
    pub origin: NodeOrigin,
    /// `capacity.pods` the kubelet will report.
    pub max_pods: u32,
    pub tags: Vec<(String, String)>,
    pub launch_template: Option<(String, String)>,
}

struct Booting {
    info: NodeInfo,
    origin: NodeOrigin,
    max_pods: u32,
    at: Duration,
}

/// Instances launched whose Node has not registered yet.
#[derive(Default)]
pub struct Launches {
    booting: Mutex<Vec<Booting>>,
}

impl Launches {
    /// Instances of a managed node group still booting.
    pub fn booting_in_nodegroup(&self, nodegroup: &str) -> usize {
        self.booting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|b| b.info.nodegroup.as_deref() == Some(nodegroup))
            .count()
    }

    /// Node names still booting.
    pub fn booting(&self) -> Vec<String> {
        self.booting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|b| b.info.name.clone())
            .collect()
    }
}

/// Make sure the IPAM knows a subnet (pod subnets are created by podnet or
/// the AWS CLI through the EC2 endpoint, after seeding).
pub async fn ensure_subnet(ctx: &Ctx, subnet_id: &str) -> Result<(), String> {
    if ctx.ipam().subnet(subnet_id).is_some() {
        return Ok(());
    }
    let Some(c) = &ctx.ec2 else {
        return Err(format!("subnet {subnet_id} is unknown"));
    };
    let out = c.describe_subnets().subnet_ids(subnet_id).send().await.map_err(|e| {
        format!(
            "DescribeSubnets {subnet_id}: {}",
            aws_sdk_ec2::error::DisplayErrorContext(&e)
        )
    })?;
    let sn = out
        .subnets()
        .first()
        .ok_or_else(|| format!("subnet {subnet_id} does not exist"))?;
    let cidr = sn
        .cidr_block()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("subnet {subnet_id} has no IPv4 CIDR"))?;
    let pool = SubnetPool::new(subnet_id, cidr, sn.availability_zone().unwrap_or_default());
    ctx.ipam().add_subnet(pool);
    Ok(())
}

/// Launch an instance; its Node registers after the boot delay.
pub async fn launch(ctx: &Ctx, req: LaunchRequest) -> Result<NodeInfo, String> {
    ensure_subnet(ctx, &req.subnet_id).await?;
    let ip = {
        let mut ipam = ctx.ipam();
        let pool = ipam.subnet_mut(&req.subnet_id).map_err(|e| e.to_string())?;
        pool.allocate(1)
            .map_err(|_| {
                format!(
                    "InsufficientFreeAddressesInSubnet: subnet {} has no free address for a new instance",
                    req.subnet_id
                )
            })?
            .first()
            .copied()
            .ok_or("no address")?
    };
    let (instance_id, eni0) = match &ctx.ec2 {
        Some(c) => {
            let launched = ec2::launch_nodes(
                c,
                &ctx.world,
                &[NodeLaunch {
                    zone: req.zone.clone(),
                    subnet_id: req.subnet_id.clone(),
                    ip,
                    instance_type: req.instance_type.clone(),
                    tags: req.tags.clone(),
                    launch_template: req.launch_template.clone(),
                }],
            )
            .await;
            match launched {
                Ok(v) => v.into_iter().next().ok_or("RunInstances returned nothing")?,
                Err(e) => {
                    release(ctx, &req.subnet_id, &[ip]);
                    return Err(e.to_string());
                }
            }
        }
        None => (crate::scenario::ec2::fake_id("i"), crate::scenario::ec2::fake_id("eni")),
    };
    let (nodegroup, nodeclaim) = match &req.origin {
        NodeOrigin::Managed { nodegroup, .. } => (Some(nodegroup.clone()), None),
        NodeOrigin::Karpenter { nodeclaim, .. } => (None, Some(nodeclaim.clone())),
        NodeOrigin::SelfManaged { .. } => (None, None),
    };
    let info = NodeInfo {
        name: node_name(ip, &ctx.scenario.region),
        instance_id,
        instance_type: req.instance_type.clone(),
        zone: req.zone.clone(),
        subnet_id: req.subnet_id.clone(),
        ip,
        enis: vec![EniInfo {
            id: eni0,
            device_index: 0,
            primary_ip: ip,
            secondary_ips: vec![],
        }],
        nodegroup,
        nodeclaim,
        pod_ips: Default::default(),
    };
    ctx.launches
        .booting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Booting {
            info: info.clone(),
            origin: req.origin,
            max_pods: req.max_pods,
            at: ctx.now() + ctx.behaviour.boot,
        });
    Ok(info)
}

fn release(ctx: &Ctx, subnet: &str, ips: &[Ipv4Addr]) {
    let mut ipam = ctx.ipam();
    if let Ok(p) = ipam.subnet_mut(subnet) {
        for ip in ips {
            p.release(*ip);
        }
    }
}

/// Register the Nodes of instances whose boot delay has passed: NotReady,
/// tainted `node.kubernetes.io/not-ready`, until the CNI runs on them.
pub fn register_booted(ctx: &Ctx) {
    let now = ctx.now();
    let due: Vec<Booting> = {
        let mut b = ctx.launches.booting.lock().unwrap_or_else(|e| e.into_inner());
        let (due, wait): (Vec<Booting>, Vec<Booting>) = b.drain(..).partition(|x| x.at <= now);
        *b = wait;
        due
    };
    for b in due {
        let created = now_rfc3339();
        let mut node = objects::node(&ctx.scenario, &b.info, &b.origin, b.max_pods, &created);
        node["status"]["conditions"] = json!(
            node["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    if c["type"] == "Ready" {
                        c["status"] = json!("False");
                        c["reason"] = json!("KubeletNotReady");
                        c["message"] = json!(
                            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
                        );
                    }
                    c
                })
                .collect::<Vec<Value>>()
        );
        let mut taints = vec![json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})];
        // Karpenter registers its nodes with the NodePool template's taints.
        if let NodeOrigin::Karpenter { nodepool, .. } = &b.origin
            && let Ok(np) = ctx.store.get(crate::kube::resources::NODEPOOL, "", nodepool)
            && let Some(extra) = np.value.pointer("/spec/template/spec/taints").and_then(Value::as_array)
        {
            taints.extend(extra.iter().cloned());
        }
        node["spec"]["taints"] = Value::Array(taints);
        if let NodeOrigin::Karpenter { .. } = b.origin {
            node["metadata"]["finalizers"] = json!(["karpenter.sh/termination"]);
            if let Some(l) = node["metadata"]["labels"].as_object_mut() {
                l.remove("karpenter.sh/initialized");
            }
        }
        if let Err(e) = ctx.store.create(NODE, "", node, &WriteOptions::internal()) {
            tracing::warn!("registering node {}: {e}", b.info.name);
            continue;
        }
        let _ = ctx.store.create(
            LEASE,
            "kube-node-lease",
            objects::node_lease(&b.info.name, &created),
            &WriteOptions::internal(),
        );
        ctx.nets().insert(b.info.name.clone(), NodeNet::launched(&b.info));
    }
}

/// Terminate a node's instance, give every address back, delete its ENIs
/// and the Node object (finalizers and all).
pub async fn terminate(ctx: &Ctx, node: &str) {
    let net = ctx.nets().remove(node);
    if let Some(net) = &net {
        if let Some(c) = &ctx.ec2 {
            for e in net.enis.iter().filter(|e| e.device > 0 && !e.id.is_empty()) {
                if let Ok(out) = c
                    .describe_network_interfaces()
                    .network_interface_ids(&e.id)
                    .send()
                    .await
                    && let Some(att) = out
                        .network_interfaces()
                        .first()
                        .and_then(|n| n.attachment())
                        .and_then(|a| a.attachment_id())
                {
                    let _ = c.detach_network_interface().attachment_id(att).force(true).send().await;
                }
                if let Err(err) = c.delete_network_interface().network_interface_id(&e.id).send().await {
                    tracing::debug!(
                        "deleting ENI {}: {}",
                        e.id,
                        aws_sdk_ec2::error::DisplayErrorContext(&err)
                    );
                }
            }
            // moto keeps a terminated instance's primary interface with its
            // secondary addresses: take them off first, or moto and the IPAM
            // would both think they are free and hand them out twice.
            for e in net.enis.iter().filter(|e| e.device == 0 && !e.secondaries.is_empty()) {
                let ips: Vec<String> = e.secondaries.iter().map(|ip| ip.to_string()).collect();
                if let Err(err) = c
                    .unassign_private_ip_addresses()
                    .network_interface_id(&e.id)
                    .set_private_ip_addresses(Some(ips))
                    .send()
                    .await
                {
                    tracing::debug!(
                        "unassigning the addresses of {}: {}",
                        e.id,
                        aws_sdk_ec2::error::DisplayErrorContext(&err)
                    );
                }
            }
            if let Err(err) = c.terminate_instances().instance_ids(&net.instance_id).send().await {
                tracing::warn!(
                    "terminating {}: {}",
                    net.instance_id,
                    aws_sdk_ec2::error::DisplayErrorContext(&err)
                );
            }
        }
        release_all(ctx, net);
    }
    let _ = edit(&ctx.store, NODE, "", node, |n| {
        if let Some(m) = n["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    });
    let _ = ctx.store.delete(NODE, "", node, &DeleteOptions::default());
    let _ = ctx
        .store
        .delete(LEASE, "kube-node-lease", node, &DeleteOptions::default());
}

fn release_all(ctx: &Ctx, net: &NodeNet) {
    // The node's primary address is not given back: moto keeps a
    // terminated instance's interface, and RunInstances with that address
    // again fails inside moto (HTTP 500).
    let mut ipam = ctx.ipam();
    for Eni {
        subnet,
        primary,
        secondaries,
        device,
        ..
    } in &net.enis
    {
        if let Ok(p) = ipam.subnet_mut(subnet) {
            if *device > 0 {
                p.release(*primary);
            }
            for ip in secondaries {
                p.release(*ip);
            }
        }
    }
}

/// Max pods EKS bakes into a managed node group's launch template: the
/// vpc-cni add-on's configuration decides (custom networking leaves the
/// primary ENI out; prefix delegation multiplies by 16), capped at 110, or
/// 250 above 30 vCPUs.
pub fn eks_max_pods(instance_type: &str, custom_networking: bool, prefix_delegation: bool) -> u32 {
    instance_types::lookup(instance_type)
        .map(|t| t.max_pods(u32::from(custom_networking), prefix_delegation))
        .unwrap_or(110)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eks_max_pods_follows_the_vpc_cni_configuration() {
        // t3.medium: 3 ENIs × (6 − 1) + 2 = 17; the primary ENI left out
        // under custom networking: 2 × 5 + 2 = 12.
        assert_eq!(eks_max_pods("t3.medium", false, false), 17);
        assert_eq!(eks_max_pods("t3.medium", true, false), 12);
        assert_eq!(eks_max_pods("t3.large", false, false), 35);
        assert_eq!(eks_max_pods("t3.large", true, false), 24);
        // Prefix delegation: a /28 per secondary slot, capped at 110 below
        // 30 vCPUs.
        assert_eq!(eks_max_pods("m5.large", false, false), 29);
        assert_eq!(eks_max_pods("m5.large", false, true), 110);
        assert_eq!(eks_max_pods("m5.large", true, true), 110);
        // Above 30 vCPUs the cap is 250.
        assert_eq!(eks_max_pods("m5.24xlarge", false, false), 250);
        assert_eq!(eks_max_pods("m5.24xlarge", true, true), 250);
        // An unknown type gets EKS's fallback.
        assert_eq!(eks_max_pods("no.such-type", false, false), 110);
    }
}
