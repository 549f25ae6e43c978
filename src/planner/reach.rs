//! The control plane and the new CIDR, planned: which admission webhooks and
//! aggregated APIs are served by pods the migration moves (each a finding
//! saying what breaks if the API server cannot reach them), and the
//! `control-plane-reach` gate that holds node replacement until
//! the control plane reaches it. EKS: "It can take a cluster up to five
//! hours for a CIDR block that you associated with a VPC to be recognized"
//! (<https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>).

use crate::discovery::Discovery;
use crate::k8s::callbacks::Callback;
use crate::spec::Spec;
use crate::steps::reach_gate::ReachGateInputs;
use crate::verify::Expectations;

use super::Finding;

/// The callbacks whose pods run on nodes the migration replaces.
pub fn at_risk<'a>(d: &'a Discovery, expect: &Expectations) -> Vec<&'a Callback> {
    d.kube
        .callbacks
        .iter()
        .filter(|c| {
            c.pods.iter().any(|(_, node)| {
                node.as_deref()
                    .and_then(|n| d.kube.nodes.iter().find(|x| x.name == n))
                    .is_some_and(|n| !expect.node_is_migrated(n))
            })
        })
        .collect()
}

fn label(c: &Callback) -> String {
    format!("{} {} ({})", c.kind, c.name, c.owner)
}

/// The gate's inputs (when the plan can and should gate) and the findings.
pub fn plan(
    spec: &Spec,
    d: &Discovery,
    expect: &Expectations,
    node_pools: &[String],
) -> (Option<ReachGateInputs>, Vec<Finding>) {
    let risky = at_risk(d, expect);
    let cidr = spec.secondary_cidr;
    let mut findings = Vec::new();
    if risky.is_empty() {
        return (None, findings);
    }
    let gate = if !spec.control_plane.gate {
        None
    } else {
        node_pools.first().map(|pool| ReachGateInputs {
            cidr,
            node_pool: pool.clone(),
            namespace: spec.control_plane.probe_namespace.clone(),
            image: spec.control_plane.probe_image.clone(),
            port: spec.control_plane.probe_port,
            at_risk: risky.iter().map(|c| label(c)).collect(),
        })
    };
    let gated = gate.is_some();
    for c in &risky {
        let reason = format!(
            "{} is served by {} pod(s) behind service {}/{} that move to {cidr}; while the control plane cannot reach {cidr}, {}",
            label(c),
            c.pods.len(),
            c.service_namespace,
            c.service_name,
            c.outage()
        );
        let f = if gated {
            Finding::note(
                "control-plane.callback",
                reason,
                "nothing to do: control-plane-reach holds node replacement until the control plane reaches the block (a node Karpenter launches for a scale-up meanwhile uses it already)",
            )
        } else {
            Finding::warning(
                "control-plane.callback",
                reason,
                "associate the block a day ahead (`podnet apply --stop-after associate-cidr`), then `podnet resume` once it is recognized",
            )
        };
        findings.push(f);
    }
    if spec.control_plane.gate && !gated {
        findings.push(Finding::warning(
            "control-plane.no-probe",
            format!("podnet probes the control plane's reach into {cidr} from a temporary Karpenter NodePool, and the plan replaces no NodePool's nodes"),
            "run `podnet apply --stop-after associate-cidr`, wait until EKS recognizes the block (up to five hours), then `podnet resume`",
        ));
    }
    let associated = d.vpc.live_cidrs().contains(&cidr);
    if gated && !associated {
        findings.push(Finding::note(
            "control-plane.new-cidr",
            format!(
                "{cidr} is new: EKS may take up to five hours to recognize it, and control-plane-reach waits until it does (up to [waits] control_plane_reach)"
            ),
            "to cut over later instead: `podnet apply --stop-after associate-cidr` now, `podnet resume` once it is recognized",
        ));
    }
    (gate, findings)
}
