//! Will the pods fit back? A rollback puts every pod address back in the
//! node subnets, the ones that ran out and were the reason to migrate; and
//! the apply may have added nodes (custom networking gives each fewer pods),
//! each of which keeps a warm pool of addresses there once it is replaced.
//! Per zone this compares the node subnets' free addresses now with what
//! the pods and nodes there would take back on them, under the VPC CNI's
//! warm-pool settings (`WARM_IP_TARGET`/`MINIMUM_IP_TARGET`, else whole
//! warm ENIs by `WARM_ENI_TARGET`: amazon-vpc-cni-k8s
//! `docs/eni-and-ip-target.md`). An estimate (Karpenter may pack the
//! replacements differently), so a warning, with the numbers.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use crate::discovery::Discovery;
use crate::k8s::snapshot::NodeSummary;
use crate::planner::Finding;

/// The VPC CNI's warm pool settings, as the aws-node env has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Warm {
    warm_ip: Option<u32>,
    minimum_ip: Option<u32>,
    warm_eni: u32,
}

impl Warm {
    fn of(env: &BTreeMap<String, String>) -> Warm {
        let n = |k: &str| env.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        Warm {
            warm_ip: n("WARM_IP_TARGET").filter(|v| *v > 0),
            minimum_ip: n("MINIMUM_IP_TARGET").filter(|v| *v > 0),
            warm_eni: n("WARM_ENI_TARGET").unwrap_or(1),
        }
    }

    /// Addresses a node with `pods` pods holds in its subnet, its own included.
    fn addresses(&self, pods: u64, node: &NodeSummary, d: &Discovery) -> u64 {
        let info = node.instance_type.as_deref().and_then(|t| d.instance_types.get(t));
        if self.warm_ip.is_some() || self.minimum_ip.is_some() {
            let warm = u64::from(self.warm_ip.unwrap_or(0));
            return 1 + (pods + warm).max(u64::from(self.minimum_ip.unwrap_or(0)));
        }
        let Some(info) = info else { return 1 + pods };
        let per_eni = u64::from(info.ipv4_per_eni.saturating_sub(1)).max(1);
        let enis = pods.div_ceil(per_eni).max(1) + u64::from(self.warm_eni);
        1 + enis.min(u64::from(info.default_card_max_enis)) * per_eni
    }
}

/// One zone's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneNeed {
    pub zone: String,
    pub node_subnets: Vec<String>,
    pub free: u64,
    pub pods: u64,
    pub nodes: usize,
    pub need: u64,
}

/// The estimate per zone that has nodes in node subnets (outside `cidr`).
pub fn needs(d: &Discovery, cidr: Ipv4Net) -> Vec<ZoneNeed> {
    let warm = Warm::of(&d.cni_env());
    let mut zones: BTreeMap<String, ZoneNeed> = BTreeMap::new();
    for n in d.kube.nodes.iter().filter(|n| n.on_vpc_cni()) {
        let Some(ip) = n
            .internal_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
        else {
            continue;
        };
        let Some(subnet) = d
            .subnets
            .iter()
            .find(|s| s.cidr.contains(&ip) && !cidr.contains(&s.cidr))
        else {
            continue;
        };
        let pods = d
            .kube
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(n.name.as_str()) && !p.host_network && !p.is_finished())
            .count() as u64;
        let z = zones
            .entry(subnet.availability_zone.clone())
            .or_insert_with(|| ZoneNeed {
                zone: subnet.availability_zone.clone(),
                node_subnets: vec![],
                free: 0,
                pods: 0,
                nodes: 0,
                need: 0,
            });
        if !z.node_subnets.contains(&subnet.id) {
            z.node_subnets.push(subnet.id.clone());
            z.free += subnet.available_ips;
        }
        z.pods += pods;
        z.nodes += 1;
        // The node's own address is in use already; what it will add is the rest.
        z.need += warm.addresses(pods, n, d) - 1;
    }
    zones.into_values().collect()
}

/// A warning for each zone whose node subnets look too small for the pods
/// that go back to them.
pub fn findings(d: &Discovery, cidr: Ipv4Net) -> Vec<Finding> {
    needs(d, cidr)
        .into_iter()
        .filter(|z| z.need > z.free)
        .map(|z| {
            Finding::warning(
                "rollback.node-subnet-capacity",
                format!(
                    "{}: the node subnets ({}) have {} free addresses; back on them, the {} pods on its {} node(s) would take about {} with the VPC CNI's warm pool: replacements would stall with pods stuck in ContainerCreating",
                    z.zone,
                    z.node_subnets.join(", "),
                    z.free,
                    z.pods,
                    z.nodes,
                    z.need
                ),
                "free addresses in the node subnets (or lower WARM_IP_TARGET/MINIMUM_IP_TARGET, or scale down) before rolling back, or keep the migration",
            )
        })
        .collect()
}
