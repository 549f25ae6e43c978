//! VPC CNI's ipamd on each node: the node's ENIs and the pod addresses on
//! them, grown on demand (and by the warm pool settings) and given back when
//! pods go. The kubelet (`kubelet.rs`) starts aws-node, which fixes a node's
//! mode, and asks here for addresses; launch and termination (`launch.rs`)
//! create and release a node's state.
//!
//! - With custom networking the node's ENIConfig is resolved in ipamd's
//!   order (label `vpc.amazonaws.com/externalEniConfig`, the annotation
//!   named by `ENI_CONFIG_ANNOTATION_DEF`, the label named by
//!   `ENI_CONFIG_LABEL_DEF`, then `default`). Pod addresses then come from
//!   secondary ENIs in the ENIConfig's subnet and the primary ENI carries
//!   none.
//! - Addresses are taken from the sandbox IPAM first and mirrored into moto
//!   (`AssignPrivateIpAddresses`, `CreateNetworkInterface` +
//!   `AttachNetworkInterface`), so moto is never asked for more than a
//!   subnet holds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use aws_sdk_ec2::operation::create_network_interface::builders::CreateNetworkInterfaceFluentBuilder;
use aws_sdk_ec2::types::PrivateIpAddressSpecification;
use serde_json::Value;

use super::{Ctx, label, s};
use crate::instance_types;
use crate::ipam::WarmConfig;
use crate::kube::resources::DAEMONSET;
use crate::scenario::{NodeInfo, World};

pub const ENI_CONFIG_LABEL: &str = "vpc.amazonaws.com/eniConfig";
pub const EXTERNAL_ENI_CONFIG_LABEL: &str = "vpc.amazonaws.com/externalEniConfig";
const DEFAULT_ENI_CONFIG_KEY: &str = "k8s.amazonaws.com/eniConfig";

/// One ENI of a node.
#[derive(Debug, Clone)]
pub struct Eni {
    pub id: String,
    pub device: u32,
    pub subnet: String,
    pub primary: Ipv4Addr,
    pub secondaries: Vec<Ipv4Addr>,
}

/// Where aws-node stands on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cni {
    /// aws-node has not started yet.
    NotStarted,
    /// aws-node crash-loops: why.
    Failing(String),
    Running,
}

/// One node's network state: the ipamd model.
#[derive(Debug, Clone)]
pub struct NodeNet {
    pub node: String,
    pub instance_id: String,
    pub instance_type: String,
    pub node_subnet: String,
    pub node_ip: Ipv4Addr,
    pub enis: Vec<Eni>,
    pub cni: Cni,
    pub custom_networking: bool,
    pub eni_config: Option<String>,
    /// Where new pod ENIs go (the ENIConfig's subnet under custom networking).
    pub pod_subnet: String,
    pub pod_security_groups: Vec<String>,
    pub warm: WarmConfig,
    /// Pod (`namespace/name`) → address.
    pub assigned: BTreeMap<String, Ipv4Addr>,
    pub restarts: u32,
}

impl NodeNet {
    /// A node just registered: only its primary ENI, aws-node not started.
    pub fn launched(info: &NodeInfo) -> NodeNet {
        NodeNet {
            node: info.name.clone(),
            instance_id: info.instance_id.clone(),
            instance_type: info.instance_type.clone(),
            node_subnet: info.subnet_id.clone(),
            node_ip: info.ip,
            enis: info
                .enis
                .iter()
                .map(|e| Eni {
                    id: e.id.clone(),
                    device: e.device_index,
                    subnet: info.subnet_id.clone(),
                    primary: e.primary_ip,
                    secondaries: e.secondary_ips.clone(),
                })
                .collect(),
            cni: Cni::NotStarted,
            custom_networking: false,
            eni_config: None,
            pod_subnet: info.subnet_id.clone(),
            pod_security_groups: vec![],
            warm: WarmConfig::default(),
            assigned: info.pod_ips.clone(),
            restarts: 0,
        }
    }

    /// Addresses on ENIs that may carry pods.
    fn pod_addresses(&self) -> impl Iterator<Item = &Ipv4Addr> {
        self.enis
            .iter()
            .filter(|e| !(self.custom_networking && e.device == 0))
            .flat_map(|e| e.secondaries.iter())
    }

    pub fn free(&self) -> Vec<Ipv4Addr> {
        let used: BTreeSet<&Ipv4Addr> = self.assigned.values().collect();
        self.pod_addresses().filter(|ip| !used.contains(ip)).copied().collect()
    }

    /// How many pod addresses the node can ever hold.
    pub fn ip_capacity(&self) -> u32 {
        instance_types::lookup(&self.instance_type)
            .map(|t| t.pod_ips(t.enis.saturating_sub(u32::from(self.custom_networking))))
            .unwrap_or(0)
    }
}

/// The seeded nodes: CNI running in the mode they were seeded with.
pub fn seeded_nets(world: &World) -> BTreeMap<String, NodeNet> {
    world
        .nodes
        .iter()
        .map(|n| {
            let mut net = NodeNet::launched(n);
            net.cni = Cni::Running;
            (n.name.clone(), net)
        })
        .collect()
}

/// aws-node's env (literal values) from the DaemonSet's template.
pub fn aws_node_env(ctx: &Ctx) -> BTreeMap<String, String> {
    let Ok(ds) = ctx.store.get(DAEMONSET, "kube-system", "aws-node") else {
        return BTreeMap::new();
    };
    ds.value
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| s(c, "/name") == "aws-node"))
        .and_then(|c| c.get("env"))
        .and_then(Value::as_array)
        .map(|env| crate::scenario::objects::env_pairs(env))
        .unwrap_or_default()
}

/// The ENIConfig name ipamd would pick for a node, and how it got there.
pub fn resolve_eni_config(node: &Value, env: &BTreeMap<String, String>) -> String {
    if let Some(n) = label(node, EXTERNAL_ENI_CONFIG_LABEL) {
        return n.to_string();
    }
    let ann_key = env
        .get("ENI_CONFIG_ANNOTATION_DEF")
        .map(String::as_str)
        .unwrap_or(DEFAULT_ENI_CONFIG_KEY);
    if let Some(n) = node
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ann_key))
        .and_then(Value::as_str)
    {
        return n.to_string();
    }
    let label_key = env
        .get("ENI_CONFIG_LABEL_DEF")
        .map(String::as_str)
        .unwrap_or(DEFAULT_ENI_CONFIG_KEY);
    if let Some(n) = label(node, label_key) {
        return n.to_string();
    }
    "default".to_string()
}

/// One planned change to a node's ENIs.
pub(super) enum Grow {
    Assign {
        eni: String,
        ips: Vec<Ipv4Addr>,
    },
    Create {
        device: u32,
        subnet: String,
        primary: Ipv4Addr,
        ips: Vec<Ipv4Addr>,
    },
}

/// Plan more addresses for a node so `need` are free (plus the warm pool,
/// best effort), taking them from the IPAM. Returns the moto work.
pub(super) fn plan_growth(ctx: &Ctx, net: &mut NodeNet, need: u32) -> Vec<Grow> {
    let Some(t) = instance_types::lookup(&net.instance_type) else {
        return vec![];
    };
    let per_eni = t.ipv4_per_eni.saturating_sub(1);
    let free = net.free().len() as u32;
    if free >= need {
        return vec![];
    }
    let short = need - free;
    let mut want = match (net.warm.warm_ip_target, net.warm.minimum_ip_target) {
        (None, None) => short.div_ceil(per_eni.max(1)) * per_eni,
        (w, m) => {
            let total_after = net.assigned.len() as u32 + need + w.unwrap_or(0);
            let target = total_after.max(m.unwrap_or(0));
            let have = net.pod_addresses().count() as u32;
            target.saturating_sub(have).max(short)
        }
    };
    let mut plan = Vec::new();
    let mut ipam = ctx.ipam();
    while want > 0 {
        let custom = net.custom_networking;
        let room = net
            .enis
            .iter_mut()
            .filter(|e| !(custom && e.device == 0))
            .find(|e| (e.secondaries.len() as u32) < per_eni);
        if let Some(eni) = room {
            let Ok(pool) = ipam.subnet_mut(&eni.subnet) else { break };
            let k = want.min(per_eni - eni.secondaries.len() as u32).min(pool.free());
            if k == 0 {
                break;
            }
            let Ok(ips) = pool.allocate(k) else { break };
            eni.secondaries.extend(&ips);
            want -= k;
            plan.push(Grow::Assign {
                eni: eni.id.clone(),
                ips,
            });
            continue;
        }
        if net.enis.len() as u32 >= t.enis {
            break;
        }
        let subnet = net.pod_subnet.clone();
        let Ok(pool) = ipam.subnet_mut(&subnet) else { break };
        let k = want.min(per_eni).min(pool.free().saturating_sub(1));
        if k == 0 {
            break;
        }
        let Ok(mut ips) = pool.allocate(k + 1) else { break };
        let primary = ips.remove(0);
        let device = net.enis.iter().map(|e| e.device).max().unwrap_or(0) + 1;
        net.enis.push(Eni {
            id: String::new(),
            device,
            subnet: subnet.clone(),
            primary,
            secondaries: ips.clone(),
        });
        want -= k;
        plan.push(Grow::Create {
            device,
            subnet,
            primary,
            ips,
        });
    }
    plan
}

/// Mirror planned growth into moto; undo what moto refused.
pub(super) async fn apply_growth(ctx: &Ctx, node: &str, plan: Vec<Grow>) {
    let Some(c) = &ctx.ec2 else {
        let mut nets = ctx.nets();
        if let Some(net) = nets.get_mut(node) {
            for e in net.enis.iter_mut().filter(|e| e.id.is_empty()) {
                e.id = crate::scenario::ec2::fake_id("eni");
            }
        }
        return;
    };
    let (instance, sgs, cluster) = {
        let nets = ctx.nets();
        let Some(n) = nets.get(node) else { return };
        let sgs = if n.pod_security_groups.is_empty() {
            vec![ctx.world.security_groups.get("node").cloned().unwrap_or_default()]
        } else {
            n.pod_security_groups.clone()
        };
        (n.instance_id.clone(), sgs, ctx.scenario.cluster.clone())
    };
    for g in plan {
        match g {
            Grow::Assign { eni, ips } => {
                let mut req = c.assign_private_ip_addresses().network_interface_id(&eni);
                for ip in &ips {
                    req = req.private_ip_addresses(ip.to_string());
                }
                if let Err(e) = req.send().await {
                    tracing::warn!(
                        "AssignPrivateIpAddresses on {eni}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(&e)
                    );
                    undo(ctx, node, &eni, None, &ips);
                }
            }
            Grow::Create {
                device,
                subnet,
                primary,
                ips,
            } => {
                let req = create_eni_request(c, &subnet, &sgs, &instance, &cluster, primary, &ips);
                let created = match req.send().await {
                    Ok(o) => o
                        .network_interface()
                        .and_then(|n| n.network_interface_id())
                        .map(str::to_string),
                    Err(e) => {
                        tracing::warn!(
                            "CreateNetworkInterface in {subnet}: {}",
                            aws_sdk_ec2::error::DisplayErrorContext(&e)
                        );
                        None
                    }
                };
                let Some(id) = created else {
                    undo(ctx, node, "", Some((device, &subnet, primary)), &ips);
                    continue;
                };
                if let Err(e) = c
                    .attach_network_interface()
                    .network_interface_id(&id)
                    .instance_id(&instance)
                    .device_index(device as i32)
                    .send()
                    .await
                {
                    tracing::warn!(
                        "AttachNetworkInterface {id}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(&e)
                    );
                }
                let mut nets = ctx.nets();
                if let Some(e) = nets
                    .get_mut(node)
                    .and_then(|n| n.enis.iter_mut().find(|e| e.device == device && e.id.is_empty()))
                {
                    e.id = id;
                }
            }
        }
    }
}

/// The `CreateNetworkInterface` ipamd sends for a new pod ENI: tagged with
/// the cluster and instance, its primary and secondary addresses chosen by
/// the IPAM beforehand.
fn create_eni_request(
    c: &aws_sdk_ec2::Client,
    subnet: &str,
    sgs: &[String],
    instance: &str,
    cluster: &str,
    primary: Ipv4Addr,
    ips: &[Ipv4Addr],
) -> CreateNetworkInterfaceFluentBuilder {
    let mut req = c
        .create_network_interface()
        .subnet_id(subnet)
        .set_groups(Some(sgs.to_vec()))
        .description(format!("aws-K8S-{instance}"))
        .private_ip_addresses(
            PrivateIpAddressSpecification::builder()
                .private_ip_address(primary.to_string())
                .primary(true)
                .build(),
        )
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::NetworkInterface)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("cluster.k8s.amazonaws.com/name")
                        .value(cluster)
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("node.k8s.amazonaws.com/instance_id")
                        .value(instance)
                        .build(),
                )
                .build(),
        );
    for ip in ips {
        req = req.private_ip_addresses(
            PrivateIpAddressSpecification::builder()
                .private_ip_address(ip.to_string())
                .primary(false)
                .build(),
        );
    }
    req
}

fn undo(ctx: &Ctx, node: &str, eni: &str, created: Option<(u32, &str, Ipv4Addr)>, ips: &[Ipv4Addr]) {
    let mut nets = ctx.nets();
    let Some(net) = nets.get_mut(node) else { return };
    let mut subnet = String::new();
    if let Some((device, sn, primary)) = created {
        net.enis.retain(|e| !(e.device == device && e.id.is_empty()));
        subnet = sn.to_string();
        let mut ipam = ctx.ipam();
        if let Ok(p) = ipam.subnet_mut(sn) {
            p.release(primary);
        }
    } else if let Some(e) = net.enis.iter_mut().find(|e| e.id == eni) {
        e.secondaries.retain(|ip| !ips.contains(ip));
        subnet = e.subnet.clone();
    }
    let mut ipam = ctx.ipam();
    if let Ok(p) = ipam.subnet_mut(&subnet) {
        for ip in ips {
            p.release(*ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scenario::EniInfo;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn node(labels: Value, annotations: Value) -> Value {
        json!({"metadata": {"name": "n", "labels": labels, "annotations": annotations}})
    }

    const ZONE: &str = "topology.kubernetes.io/zone";

    #[test]
    fn eni_config_external_label_wins() {
        let n = node(
            json!({EXTERNAL_ENI_CONFIG_LABEL: "external", ZONE: "ap-northeast-2a", DEFAULT_ENI_CONFIG_KEY: "by-label"}),
            json!({DEFAULT_ENI_CONFIG_KEY: "by-annotation"}),
        );
        let e = env(&[("ENI_CONFIG_LABEL_DEF", ZONE)]);
        assert_eq!(resolve_eni_config(&n, &e), "external");
    }

    #[test]
    fn eni_config_annotation_before_label() {
        // The annotation named by ENI_CONFIG_ANNOTATION_DEF beats the label
        // named by ENI_CONFIG_LABEL_DEF.
        let n = node(
            json!({ZONE: "ap-northeast-2a"}),
            json!({"example.com/eni": "from-annotation"}),
        );
        let e = env(&[
            ("ENI_CONFIG_ANNOTATION_DEF", "example.com/eni"),
            ("ENI_CONFIG_LABEL_DEF", ZONE),
        ]);
        assert_eq!(resolve_eni_config(&n, &e), "from-annotation");
        // Without ENI_CONFIG_ANNOTATION_DEF, ipamd's default annotation key
        // k8s.amazonaws.com/eniConfig is read.
        let n = node(
            json!({ZONE: "ap-northeast-2a"}),
            json!({DEFAULT_ENI_CONFIG_KEY: "default-key"}),
        );
        assert_eq!(
            resolve_eni_config(&n, &env(&[("ENI_CONFIG_LABEL_DEF", ZONE)])),
            "default-key"
        );
        // An annotation under another key than the one configured is ignored.
        let n = node(
            json!({ZONE: "ap-northeast-2c"}),
            json!({DEFAULT_ENI_CONFIG_KEY: "ignored"}),
        );
        let e = env(&[
            ("ENI_CONFIG_ANNOTATION_DEF", "example.com/eni"),
            ("ENI_CONFIG_LABEL_DEF", ZONE),
        ]);
        assert_eq!(resolve_eni_config(&n, &e), "ap-northeast-2c");
    }

    #[test]
    fn eni_config_label_def_then_default() {
        let n = node(json!({ZONE: "ap-northeast-2c"}), json!({}));
        assert_eq!(
            resolve_eni_config(&n, &env(&[("ENI_CONFIG_LABEL_DEF", ZONE)])),
            "ap-northeast-2c"
        );
        // Without ENI_CONFIG_LABEL_DEF the zone label means nothing: the
        // label ipamd reads by default is k8s.amazonaws.com/eniConfig.
        assert_eq!(resolve_eni_config(&n, &env(&[])), "default");
        let n = node(json!({DEFAULT_ENI_CONFIG_KEY: "by-default-label"}), json!({}));
        assert_eq!(resolve_eni_config(&n, &env(&[])), "by-default-label");
        // A label def naming a label the node lacks falls through to "default".
        assert_eq!(
            resolve_eni_config(&node(json!({}), json!({})), &env(&[("ENI_CONFIG_LABEL_DEF", ZONE)])),
            "default"
        );
        // No labels or annotations at all.
        assert_eq!(
            resolve_eni_config(&json!({"metadata": {"name": "bare"}}), &env(&[])),
            "default"
        );
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn t3_medium_net() -> NodeNet {
        let info = NodeInfo {
            name: "ip-10-255-11-50.ap-northeast-2.compute.internal".into(),
            instance_id: "i-1".into(),
            instance_type: "t3.medium".into(),
            zone: "ap-northeast-2a".into(),
            subnet_id: "subnet-node".into(),
            ip: ip("10.255.11.50"),
            enis: vec![EniInfo {
                id: "eni-0".into(),
                device_index: 0,
                primary_ip: ip("10.255.11.50"),
                secondary_ips: vec![ip("10.255.11.51"), ip("10.255.11.52")],
            }],
            nodegroup: None,
            nodeclaim: Some("default-x".into()),
            pod_ips: BTreeMap::new(),
        };
        let mut net = NodeNet::launched(&info);
        net.enis.push(Eni {
            id: "eni-1".into(),
            device: 1,
            subnet: "subnet-pods".into(),
            primary: ip("100.64.1.10"),
            secondaries: vec![ip("100.64.1.11"), ip("100.64.1.12"), ip("100.64.1.13")],
        });
        net
    }

    #[test]
    fn free_excludes_assigned_and_primary_eni_under_custom_networking() {
        let mut net = t3_medium_net();
        assert_eq!(net.cni, Cni::NotStarted);
        // Secondary-IP mode: every ENI's secondaries carry pods, the ENIs'
        // primary addresses never do.
        assert_eq!(net.free().len(), 5);
        assert!(!net.free().contains(&ip("10.255.11.50")));
        assert!(!net.free().contains(&ip("100.64.1.10")));
        net.assigned.insert("default/a".into(), ip("10.255.11.51"));
        net.assigned.insert("default/b".into(), ip("100.64.1.12"));
        let free = net.free();
        assert_eq!(free, vec![ip("10.255.11.52"), ip("100.64.1.11"), ip("100.64.1.13")]);

        // Custom networking: the primary ENI's secondaries are not pod
        // addresses (even ones left over from before).
        net.custom_networking = true;
        assert_eq!(net.free(), vec![ip("100.64.1.11"), ip("100.64.1.13")]);
    }

    #[test]
    fn ip_capacity_leaves_the_primary_eni_out_under_custom_networking() {
        let mut net = t3_medium_net();
        // t3.medium: 3 ENIs × (6 − 1) = 15 pod addresses; 2 × 5 = 10 with
        // custom networking (what makes Karpenter's 17 max pods a lie).
        assert_eq!(net.ip_capacity(), 15);
        net.custom_networking = true;
        assert_eq!(net.ip_capacity(), 10);
        net.instance_type = "t3.large".into();
        assert_eq!(net.ip_capacity(), 22);
        net.custom_networking = false;
        assert_eq!(net.ip_capacity(), 33);
        net.instance_type = "no.such-type".into();
        assert_eq!(net.ip_capacity(), 0);
    }
}
