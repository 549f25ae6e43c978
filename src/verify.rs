//! Verification: is the cluster fully on custom networking? Every running
//! non-hostNetwork pod on the secondary CIDR, every node on its AZ's
//! ENIConfig with the expected `capacity.pods`, no pod stuck on IP
//! assignment, an ENIConfig per AZ, the aws-node env and Karpenter's
//! `RESERVED_ENIS` set, and the free-IP headroom of each pod subnet. Used by
//! the `verify` step that ends `apply` and by `podnet verify`.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};

use crate::aws::{AwsClients, AwsError};
use crate::capacity::{CniSettings, InstanceInfo, karpenter_max_pods, max_pods};
use crate::discovery::{CUSTOM_NETWORK_ENV, ENI_CONFIG_LABEL_ENV};
use crate::k8s::snapshot::{self, ENICONFIG_LABEL, KarpenterHint, KubeSnapshot, NodeSummary};
use crate::k8s::{KubeError, list_all};
use crate::network::usable_addresses;

/// The message the VPC CNI puts in `FailedCreatePodSandBox` events when it
/// has no address for a pod.
pub const IP_ASSIGNMENT_FAILURE: &str = "failed to assign an IP address to container";

/// What the migrated cluster must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    pub vpc_id: String,
    pub secondary_cidr: Ipv4Net,
    /// AZ → pod subnet CIDR.
    pub pod_subnets: BTreeMap<String, Ipv4Net>,
    /// The node label naming a node's ENIConfig (`topology.kubernetes.io/zone`).
    pub eni_config_label: String,
    pub cni_env: BTreeMap<String, String>,
    pub cni_after: CniSettings,
    pub instance_types: BTreeMap<String, InstanceInfo>,
    /// Karpenter controller to check, and the values it must have.
    pub karpenter: Option<KarpenterExpectation>,
    /// Which way nodes move: onto custom networking (`apply`) or off it
    /// (`rollback`, where `cni_after` and `karpenter` hold the settings as
    /// they were before the apply). Absent from plans saved before rollback.
    #[serde(default, skip_serializing_if = "Direction::is_onto")]
    pub direction: Direction,
    /// Self-managed nodes the plan leaves (`replacement.self_managed =
    /// "leave"`): not checked, like Windows and Fargate nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leave_self_managed: bool,
}

/// Whether a replacement moves nodes onto custom networking or back off it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    #[default]
    Onto,
    OffAgain,
}

impl Direction {
    fn is_onto(&self) -> bool {
        *self == Direction::Onto
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KarpenterExpectation {
    pub namespace: String,
    pub deployment: String,
    pub reserved_enis: u32,
    /// One maxPods for every class: plans saved before podnet planned it per
    /// EC2NodeClass (and their rollbacks).
    pub max_pods: Option<u32>,
    /// EC2NodeClass → the static `kubelet.maxPods` it carries after the apply.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_max_pods: BTreeMap<String, u32>,
    /// NodePool → its EC2NodeClass.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_classes: BTreeMap<String, String>,
}

impl KarpenterExpectation {
    /// The static maxPods a NodePool's nodes carry, if any.
    fn max_pods_for(&self, pool: &str) -> Option<u32> {
        // As configure-karpenter reads its inputs: no per-class values
        // means the one max_pods for every class.
        if self.pool_classes.is_empty() || self.class_max_pods.is_empty() {
            return self.max_pods;
        }
        self.class_max_pods.get(self.pool_classes.get(pool)?).copied()
    }
}

impl Expectations {
    /// `capacity.pods` a node of this kind and type must report once it runs
    /// under custom networking; `None` when the type is unknown.
    pub fn expected_pods(&self, node: &NodeSummary) -> Option<u32> {
        let info = self.instance_types.get(node.instance_type.as_deref()?)?;
        if let Some(pool) = &node.nodepool {
            let k = self.karpenter.as_ref();
            return Some(match k.and_then(|k| k.max_pods_for(pool)) {
                Some(m) => m,
                None => karpenter_max_pods(info, k.map(|k| k.reserved_enis).unwrap_or(0)),
            });
        }
        Some(max_pods(info, &self.cni_after, false).max_pods)
    }

    /// The ENIConfig a node must use: its value of the ENIConfig label.
    pub fn expected_eniconfig(&self, node: &NodeSummary) -> Option<String> {
        node.labels.get(&self.eni_config_label).cloned()
    }

    /// A node already runs as planned: on its ENIConfig (or, rolling
    /// back, on none and not marked for replacement by `restore-vpc-cni`).
    pub fn node_is_migrated(&self, node: &NodeSummary) -> bool {
        match self.direction {
            Direction::Onto => node.eniconfig_label.is_some() && node.eniconfig_label == self.expected_eniconfig(node),
            Direction::OffAgain => node.eniconfig_label.is_none() && node.replace_mark.is_none(),
        }
    }

    /// Why a new node is not yet as planned (see [`Self::node_is_migrated`]).
    pub fn mode_problem(&self, node: &NodeSummary) -> String {
        match self.direction {
            Direction::Onto => format!("{} has no ENIConfig label (custom networking not in effect)", node.name),
            Direction::OffAgain => format!(
                "{} still runs custom networking (ENIConfig label {}, rollback mark {})",
                node.name,
                node.eniconfig_label.as_deref().unwrap_or("none"),
                node.replace_mark.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub passed: bool,
    /// A warning does not fail verification.
    pub warning: bool,
    pub summary: String,
    /// What failed, one line each (capped).
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub checks: Vec<Check>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed || c.warning)
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed && !c.warning).collect()
    }
}

const MAX_LISTED: usize = 20;

fn check(id: &str, summary: String, failures: Vec<String>) -> Check {
    let passed = failures.is_empty();
    let total = failures.len();
    let mut failures: Vec<String> = failures.into_iter().take(MAX_LISTED).collect();
    if total > MAX_LISTED {
        failures.push(format!("… and {} more", total - MAX_LISTED));
    }
    Check {
        id: id.into(),
        passed,
        warning: false,
        summary,
        failures,
    }
}

/// Why the checks could not be run (never "the checks failed": that is a
/// report).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Runs every check against the live cluster. A failed read is an error,
/// not a check skipped: a verification that could not look has not passed.
pub async fn verify(aws: &AwsClients, kube: &kube::Client, x: &Expectations) -> Result<VerifyReport, VerifyError> {
    let hint = KarpenterHint {
        namespace: x.karpenter.as_ref().map(|k| k.namespace.clone()),
        deployment: x.karpenter.as_ref().map(|k| k.deployment.clone()),
    };
    let snap = snapshot::take(kube, &hint).await?;
    let events_api: Api<Event> = Api::all(kube.clone());
    let lp = ListParams::default().fields("reason=FailedCreatePodSandBox");
    let events = match list_all(&events_api, &lp, "events").await {
        Ok(e) => e,
        // An API server that cannot select events by reason: read them all.
        Err(e) if e.status == Some(400) => list_all(&events_api, &ListParams::default(), "events").await?,
        Err(e) => return Err(e.into()),
    };
    let subnets = aws.ec2.describe_subnets(&x.vpc_id).await?;
    let mut report = evaluate(x, &snap, &events, Some(&subnets));
    report.checks.push(control_plane_reach(kube, &snap).await?);
    Ok(report)
}

/// Every Service-backed webhook and APIService answers the API server: an
/// APIService is `Available`, and the API server's service proxy reaches
/// each one's pods (the control plane reaches the pod CIDR).
async fn control_plane_reach(kube: &kube::Client, snap: &KubeSnapshot) -> Result<Check, KubeError> {
    let mut failures = Vec::new();
    for c in &snap.callbacks {
        if c.available == Some(false) {
            failures.push(format!("{} is not Available", c.owner));
        }
        if c.pods.is_empty() {
            continue;
        }
        if let Some(why) = crate::k8s::callbacks::unreachable(kube, c).await? {
            failures.push(format!("{} {} ({}): {why}", c.kind, c.name, c.owner));
        }
    }
    let n = snap.callbacks.len();
    Ok(check(
        "control-plane.reach",
        format!("the control plane reaches all {n} webhooks and aggregated APIs served in the cluster"),
        failures,
    ))
}

/// The checks, on what was read (pure, for tests).
pub fn evaluate(
    x: &Expectations,
    snap: &KubeSnapshot,
    events: &[Event],
    subnets: Option<&[crate::aws::ec2::SubnetInfo]>,
) -> VerifyReport {
    let mut r = VerifyReport::default();
    let linux: Vec<&NodeSummary> = snap
        .nodes
        .iter()
        .filter(|n| n.on_vpc_cni())
        .filter(|n| !(x.leave_self_managed && crate::planner::node_kinds::is_self_managed(n)))
        .collect();
    r.checks.push(pods_in_pod_cidr(x, snap, &linux));
    r.checks.push(nodes_eniconfig_label(x, &linux));
    r.checks.push(nodes_capacity_pods(x, &linux));
    r.checks.push(pods_no_ip_assignment_failures(snap, events));
    r.checks.push(eniconfigs_per_az(x, snap, subnets));
    r.checks.push(aws_node_env(x, snap));
    if let Some(k) = &x.karpenter {
        r.checks.push(karpenter_reserved_enis(k, snap));
    }
    if let Some(subnets) = subnets {
        r.checks.push(pod_subnets_headroom(x, subnets));
    }
    r
}

/// Pods on Windows and Fargate nodes keep their addresses: not checked.
fn pods_in_pod_cidr(x: &Expectations, snap: &KubeSnapshot, on_cni: &[&NodeSummary]) -> Check {
    let running: Vec<_> = snap
        .pods
        .iter()
        .filter(|p| p.phase == "Running" && !p.host_network)
        .filter(|p| p.node.as_ref().is_none_or(|n| on_cni.iter().any(|c| &c.name == n)))
        .collect();
    let outside: Vec<String> = running
        .iter()
        .filter(|p| {
            !p.ip
                .as_deref()
                .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
                .is_some_and(|ip| x.secondary_cidr.contains(&ip))
        })
        .map(|p| {
            format!(
                "{} has {} on {}",
                p.key(),
                p.ip.as_deref().unwrap_or("no IP"),
                p.node.as_deref().unwrap_or("?")
            )
        })
        .collect();
    check(
        "pods.ip-in-pod-cidr",
        format!(
            "{} of {} running pods (not hostNetwork) have an address in {}",
            running.len() - outside.len(),
            running.len(),
            x.secondary_cidr
        ),
        outside,
    )
}

fn nodes_eniconfig_label(x: &Expectations, linux: &[&NodeSummary]) -> Check {
    let unlabelled: Vec<String> = linux
        .iter()
        .filter(|n| !x.node_is_migrated(n))
        .map(|n| {
            format!(
                "{} has {}={} (expected {})",
                n.name,
                ENICONFIG_LABEL,
                n.eniconfig_label.as_deref().unwrap_or("<unset>"),
                x.expected_eniconfig(n)
                    .unwrap_or_else(|| format!("a value of {}", x.eni_config_label))
            )
        })
        .collect();
    check(
        "nodes.eniconfig-label",
        format!(
            "{} of {} nodes carry {ENICONFIG_LABEL}=<their {}>",
            linux.len() - unlabelled.len(),
            linux.len(),
            x.eni_config_label
        ),
        unlabelled,
    )
}

fn nodes_capacity_pods(x: &Expectations, linux: &[&NodeSummary]) -> Check {
    let mut unknown_types = Vec::new();
    let wrong_capacity: Vec<String> = linux
        .iter()
        .filter_map(|n| match x.expected_pods(n) {
            None => {
                unknown_types.push(n.name.clone());
                None
            }
            Some(want) if n.capacity_pods != Some(want) => Some(format!(
                "{} ({}) has capacity.pods {} (expected {want})",
                n.name,
                n.instance_type.as_deref().unwrap_or("?"),
                n.capacity_pods.map(|c| c.to_string()).unwrap_or_else(|| "unset".into())
            )),
            Some(_) => None,
        })
        .collect();
    let mut c = check(
        "nodes.capacity-pods",
        format!(
            "{} of {} nodes report the custom-networking max pods",
            linux.len() - wrong_capacity.len() - unknown_types.len(),
            linux.len()
        ),
        wrong_capacity,
    );
    if !unknown_types.is_empty() {
        c.summary.push_str(&format!(
            " ({} of unknown instance types not checked)",
            unknown_types.len()
        ));
    }
    c
}

fn pods_no_ip_assignment_failures(snap: &KubeSnapshot, events: &[Event]) -> Check {
    let live: BTreeMap<(String, String), &snapshot::PodSummary> = snap
        .pods
        .iter()
        .map(|p| ((p.namespace.clone(), p.name.clone()), p))
        .collect();
    let stuck: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
        .filter(|e| e.message.as_deref().is_some_and(|m| m.contains(IP_ASSIGNMENT_FAILURE)))
        .filter_map(|e| {
            let o = &e.involved_object;
            let key = (
                o.namespace.clone().unwrap_or_default(),
                o.name.clone().unwrap_or_default(),
            );
            let pod = live.get(&key)?;
            // Only pods that still wait for an address count, not history.
            (pod.phase != "Running" && pod.uid == o.uid.clone().unwrap_or_default())
                .then(|| format!("{}/{} on {}", key.0, key.1, pod.node.as_deref().unwrap_or("?")))
        })
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect();
    check(
        "pods.no-ip-assignment-failures",
        format!("{} pod(s) stuck with \"{IP_ASSIGNMENT_FAILURE}\"", stuck.len()),
        stuck,
    )
}

fn eniconfigs_per_az(x: &Expectations, snap: &KubeSnapshot, subnets: Option<&[crate::aws::ec2::SubnetInfo]>) -> Check {
    let eniconfigs = snap.eniconfigs.clone().unwrap_or_default();
    let mut missing = Vec::new();
    for (az, cidr) in &x.pod_subnets {
        let want_subnet = subnets
            .and_then(|s| s.iter().find(|s| &s.cidr == cidr && &s.availability_zone == az))
            .map(|s| s.id.clone());
        match eniconfigs.iter().find(|e| &e.name == az) {
            None => missing.push(format!("no ENIConfig named {az}")),
            Some(e) if want_subnet.is_some() && e.subnet != want_subnet => missing.push(format!(
                "ENIConfig {az} points at {} instead of {} ({cidr})",
                e.subnet.as_deref().unwrap_or("nothing"),
                want_subnet.unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    check(
        "eniconfigs.per-az",
        format!(
            "{} AZ(s) with a pod subnet, each needs its ENIConfig",
            x.pod_subnets.len()
        ),
        missing,
    )
}

fn aws_node_env(x: &Expectations, snap: &KubeSnapshot) -> Check {
    let env = snap.aws_node.as_ref().map(|a| a.env.clone()).unwrap_or_default();
    let env_wrong: Vec<String> = x
        .cni_env
        .iter()
        .filter(|(k, v)| env.get(*k).map(|h| h.eq_ignore_ascii_case(v)) != Some(true))
        .map(|(k, v)| {
            format!(
                "aws-node {k}={} (expected {v})",
                env.get(k).map(String::as_str).unwrap_or("<unset>")
            )
        })
        .collect();
    check(
        "aws-node.env",
        format!("aws-node runs with {CUSTOM_NETWORK_ENV} and {ENI_CONFIG_LABEL_ENV} set"),
        env_wrong,
    )
}

fn karpenter_reserved_enis(k: &KarpenterExpectation, snap: &KubeSnapshot) -> Check {
    let have = snap
        .karpenter
        .as_ref()
        .and_then(|s| s.controller.as_ref())
        .and_then(|c| c.reserved_enis.clone());
    let want = k.reserved_enis.to_string();
    let wrong = if have.as_deref() == Some(want.as_str()) {
        vec![]
    } else {
        vec![format!(
            "{}/{} RESERVED_ENIS={} (expected {want})",
            k.namespace,
            k.deployment,
            have.as_deref().unwrap_or("<unset>")
        )]
    };
    check(
        "karpenter.reserved-enis",
        format!("Karpenter RESERVED_ENIS={want}"),
        wrong,
    )
}

fn pod_subnets_headroom(x: &Expectations, subnets: &[crate::aws::ec2::SubnetInfo]) -> Check {
    let mut lines = Vec::new();
    let mut low = Vec::new();
    for (az, cidr) in &x.pod_subnets {
        if let Some(s) = subnets.iter().find(|s| &s.cidr == cidr) {
            let usable = usable_addresses(cidr);
            lines.push(format!("{az} {cidr}: {} of {usable} free", s.available_ips));
            if s.available_ips * 10 < usable {
                low.push(format!(
                    "{az} {cidr} has only {} of {usable} addresses free",
                    s.available_ips
                ));
            }
        }
    }
    let mut c = check(
        "pod-subnets.headroom",
        format!("free pod IPs: {}", lines.join("; ")),
        low,
    );
    c.warning = !c.passed;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::tests::seed::{seed, seed_spec};

    /// Onto custom networking a node is done on its zone's ENIConfig; off
    /// it again, with neither the label nor the rollback's mark (ipamd
    /// drops the label by itself, so the label alone cannot tell).
    #[test]
    fn a_node_is_done_by_direction() {
        let d = seed();
        let onto = crate::planner::plan(&seed_spec(), &d).inputs.expect;
        let off = Expectations {
            direction: Direction::OffAgain,
            ..onto.clone()
        };
        let mut n = d.kube.nodes[0].clone();
        n.labels.insert(onto.eni_config_label.clone(), "ap-northeast-2a".into());
        let zone = Some("ap-northeast-2a".to_string());
        assert!(!onto.node_is_migrated(&n) && off.node_is_migrated(&n));
        n.eniconfig_label = zone;
        assert!(onto.node_is_migrated(&n) && !off.node_is_migrated(&n));
        n.eniconfig_label = None;
        n.replace_mark = Some("off-custom-networking".into());
        assert!(!off.node_is_migrated(&n), "marked: still to replace");
        assert!(off.mode_problem(&n).contains("rollback mark off-custom-networking"));
        // Plans saved before rollback existed decode onto custom networking.
        let mut saved = serde_json::to_value(&onto).unwrap();
        saved.as_object_mut().unwrap().remove("direction");
        let back: Expectations = serde_json::from_value(saved).unwrap();
        assert_eq!(back.direction, Direction::Onto);
    }

    /// Windows, Fargate and (when the plan leaves them) self-managed nodes
    /// are passed by: neither they nor their pods fail the checks.
    #[test]
    fn nodes_the_plan_does_not_migrate_are_not_checked() {
        let d = seed();
        let mut x = crate::planner::plan(&seed_spec(), &d).inputs.expect;
        let mut snap = d.kube.clone();
        snap.nodes.truncate(1);
        snap.nodes[0].nodegroup = None;
        snap.pods
            .retain(|p| p.node.as_deref() == Some(snap.nodes[0].name.as_str()));
        let failed = |x: &Expectations, snap: &KubeSnapshot| -> Vec<String> {
            evaluate(x, snap, &[], None)
                .checks
                .iter()
                .filter(|c| c.id.starts_with("nodes.") || c.id == "pods.ip-in-pod-cidr")
                .filter(|c| !c.failures.is_empty())
                .map(|c| c.id.clone())
                .collect()
        };
        assert!(
            !failed(&x, &snap).is_empty(),
            "an old self-managed node fails when checked"
        );
        x.leave_self_managed = true;
        assert_eq!(failed(&x, &snap), Vec::<String>::new());
        x.leave_self_managed = false;
        snap.nodes[0].os = "windows".into();
        assert_eq!(failed(&x, &snap), Vec::<String>::new());
    }
}
