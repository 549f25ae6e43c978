//! `podnet plan --rollback`: the reverse migration, from the apply's record
//! and the cluster as it is now. Pure, so every rule is unit-tested on a
//! hand-built discovery. What podnet did not create and would have to
//! remove to give the VPC back its old shape (a subnet in the CIDR, a rule
//! for it that someone added by hand) is an error naming it: nothing is
//! deleted on a guess.

use ipnet::Ipv4Net;

use super::record::ApplyRecord;
use crate::aws::ec2::RuleSource;
use crate::discovery::Discovery;
use crate::engine::{Action, Change, StepPlan};
use crate::planner::Finding;
use crate::spec::OWNER_TAG;
use crate::steps::MigrationInputs;

/// Reverse unit ids, stable across releases: a rollback journal refers to them.
pub mod ids {
    pub const RESTORE_VPC_CNI: &str = "restore-vpc-cni";
    pub const RESTORE_KARPENTER: &str = "restore-karpenter";
    pub const REPLACE_NODES: &str = "replace-nodes-back";
    pub const REMOVE_ENICONFIGS: &str = "remove-eniconfigs";
    pub const DELETE_POD_ENIS: &str = "delete-pod-subnet-enis";
    pub const REVOKE_RULES: &str = "revoke-security-group-rules";
    pub const REMOVE_POD_SUBNETS: &str = "remove-pod-subnets";
    pub const DISASSOCIATE_CIDR: &str = "disassociate-cidr";
}

/// Everything `plan --rollback` shows.
#[derive(Debug, Clone)]
pub struct RollbackPlan {
    pub findings: Vec<Finding>,
    pub steps: Vec<StepPlan>,
}

impl RollbackPlan {
    pub fn has_errors(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == crate::planner::Severity::Error)
    }
}

/// Plans the rollback of the apply `inputs` recorded in `rec`, against `d`.
pub fn plan(inputs: &MigrationInputs, rec: &ApplyRecord, d: &Discovery) -> RollbackPlan {
    let cidr = inputs.secondary_cidr;
    let mut findings = foreign_subnets(cidr, rec, d);
    findings.extend(foreign_rules(cidr, rec, d));
    findings.extend(lost_ownership(rec, d));
    findings.extend(super::capacity::findings(d, cidr));
    let steps = vec![
        vpc_cni_step(rec),
        karpenter_step(rec),
        nodes_step(d),
        eniconfigs_step(rec),
        StepPlan::new(ids::DELETE_POD_ENIS, "delete the VPC CNI's detached ENIs left in the pod subnets").note(
            "only interfaces the CNI made (its tags) that no instance holds; anything else in a pod subnet stops the rollback",
        ),
        rules_step(rec),
        subnets_step(rec),
        association_step(rec),
    ];
    RollbackPlan { findings, steps }
}

/// Subnets in the secondary CIDR that the apply neither created nor adopted:
/// the block cannot be disassociated while they are there.
fn foreign_subnets(cidr: Ipv4Net, rec: &ApplyRecord, d: &Discovery) -> Vec<Finding> {
    d.subnets
        .iter()
        .filter(|s| cidr.contains(&s.cidr))
        .filter(|s| !rec.subnets.iter().any(|r| r.subnet_id == s.id))
        .map(|s| {
            Finding::error(
                "rollback.foreign-subnet",
                format!(
                    "subnet {} ({} in {}) is in {cidr} but is not in the apply's journal: podnet did not create it and will not delete it, and EC2 keeps the block while it is there",
                    s.id, s.cidr, s.availability_zone
                ),
                "move what runs there and delete it by hand (or keep the CIDR), then run `podnet plan --rollback` again",
            )
        })
        .collect()
}

/// Ingress rules for the pod CIDR that podnet did not add and did not find
/// before the apply: someone added them since, for pods that are leaving.
fn foreign_rules(cidr: Ipv4Net, rec: &ApplyRecord, d: &Discovery) -> Vec<Finding> {
    let known: Vec<&str> = rec
        .rules
        .iter()
        .flat_map(|r| r.rule_ids.iter().map(String::as_str))
        .collect();
    let mut out = vec![];
    for g in &d.security_groups {
        for r in &g.ingress {
            let RuleSource::Cidr(src) = &r.source else { continue };
            if !cidr.contains(src) {
                continue;
            }
            if r.rule_id.as_deref().is_some_and(|id| known.contains(&id)) {
                continue;
            }
            out.push(Finding::error(
                "rollback.foreign-rule",
                format!(
                    "{} ({}) admits {src} on {} {}, a rule that is not in the apply's journal: podnet did not add it and will not revoke it",
                    g.id,
                    g.name,
                    r.protocol,
                    ports(r.from_port, r.to_port),
                ),
                "revoke it by hand if it was for the pods (`aws ec2 revoke-security-group-ingress`), or keep it and the CIDR, then plan again",
            ));
        }
    }
    out
}

/// What the journal says podnet created but no longer carries its mark.
fn lost_ownership(rec: &ApplyRecord, d: &Discovery) -> Vec<Finding> {
    let mut out = vec![];
    for r in rec.subnets.iter().filter(|s| s.created == Some(true)) {
        if let Some(s) = d.subnets.iter().find(|s| s.id == r.subnet_id)
            && !s.tags.contains_key(OWNER_TAG)
        {
            out.push(Finding::error(
                "rollback.untagged-subnet",
                format!(
                    "{} ({}) was created by podnet but no longer carries its {OWNER_TAG} tag: someone took it over",
                    s.id, s.cidr
                ),
                format!("tag it {OWNER_TAG} again to let podnet delete it, or delete it by hand"),
            ));
        }
    }
    for e in rec.eniconfigs.iter().filter(|e| e.created == Some(true)) {
        if let Some(k) = d.kube.eniconfigs.iter().flatten().find(|k| k.name == e.name)
            && k.subnet.as_deref() != Some(e.subnet.as_str())
        {
            out.push(Finding::error(
                "rollback.changed-eniconfig",
                format!(
                    "ENIConfig {} now points at {} instead of podnet's {}: someone changed it",
                    e.name,
                    k.subnet.as_deref().unwrap_or("no subnet"),
                    e.subnet
                ),
                "put it back or delete it by hand, then plan again",
            ));
        }
    }
    out
}

fn ports(from: Option<i32>, to: Option<i32>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "all".into(),
    }
}

fn karpenter_step(rec: &ApplyRecord) -> StepPlan {
    let plan = StepPlan::new(ids::RESTORE_KARPENTER, "put Karpenter's settings back");
    let Some(k) = rec.karpenter.as_ref().filter(|k| !k.skipped) else {
        return plan.note("the apply did not configure Karpenter");
    };
    let name = format!(
        "{}/{}",
        k.namespace.as_deref().unwrap_or("?"),
        k.deployment.as_deref().unwrap_or("?")
    );
    let before = k.reserved_enis_before.as_ref().and_then(|p| p.value.clone());
    let mut plan = plan.with(Change::new(Action::Update, "kubernetes_deployment_env", name).change(
        "env.RESERVED_ENIS",
        k.reserved_enis,
        before,
    ));
    for (class, was) in k.max_pods_before.iter().flatten() {
        plan = plan.with(Change::new(Action::Update, "karpenter_ec2nodeclass", class).change(
            "spec.kubelet.maxPods",
            k.class_max_pods.get(class).copied().or(k.max_pods),
            was,
        ));
    }
    plan
}

fn vpc_cni_step(rec: &ApplyRecord) -> StepPlan {
    let plan = StepPlan::new(
        ids::RESTORE_VPC_CNI,
        "turn custom networking off: the vpc-cni configuration as it was",
    );
    let Some(a) = &rec.addon else {
        return plan.note("the apply did not change the vpc-cni configuration");
    };
    // Key by key: the keys podnet set go back to their values before (or
    // away); every other key of the configuration stays as it is now.
    let mut c = if a.configuration_values_before.is_some() {
        Change::new(Action::Update, "aws_eks_addon", "vpc-cni")
            .because("one UpdateAddon; nodes already running keep their mode until replaced")
    } else {
        Change::new(Action::Update, "kubernetes_daemonset_env", "kube-system/aws-node")
    };
    for (k, was) in a.env_before.iter().flatten() {
        c = c.change(format!("env.{k}"), a.env.get(k), was);
    }
    plan.with(c)
}

fn nodes_step(d: &Discovery) -> StepPlan {
    let mut plan = StepPlan::new(
        ids::REPLACE_NODES,
        "replace every node on custom networking (same drain rules and PDBs as apply)",
    );
    for n in d
        .kube
        .nodes
        .iter()
        .filter(|n| n.eniconfig_label.is_some() || n.replace_mark.is_some())
    {
        let owner = match (&n.nodepool, &n.nodegroup) {
            (Some(p), _) => format!("NodePool {p}"),
            (_, Some(g)) => format!("node group {g}"),
            _ => "unmanaged".into(),
        };
        plan = plan.with(
            Change::new(Action::Replace, "kubernetes_node", &n.name)
                .change("eniConfig", &n.eniconfig_label, None::<String>)
                .because(owner),
        );
    }
    plan
}

fn eniconfigs_step(rec: &ApplyRecord) -> StepPlan {
    let mut plan = StepPlan::new(ids::REMOVE_ENICONFIGS, "remove the ENIConfigs podnet created");
    for e in &rec.eniconfigs {
        plan = plan.with(match &e.found {
            None => Change::new(Action::Delete, "kubernetes_eniconfig", &e.name).set("spec.subnet", &e.subnet),
            Some(f) => Change::new(Action::Update, "kubernetes_eniconfig", &e.name)
                .change("spec.subnet", &e.subnet, &f.subnet)
                .change("spec.securityGroups", &e.security_groups, &f.security_groups)
                .because("it existed before the apply"),
        });
    }
    plan
}

fn rules_step(rec: &ApplyRecord) -> StepPlan {
    let mut plan = StepPlan::new(ids::REVOKE_RULES, "revoke the ingress rules podnet added");
    for r in &rec.rules {
        let name = format!(
            "{} ({}) {} {}",
            r.group_id,
            r.group_name,
            r.protocol,
            ports(r.from_port, r.to_port)
        );
        plan = plan.with(if r.created {
            Change::new(Action::Delete, "aws_security_group_rule", name)
                .set("cidr_ipv4", r.cidr.to_string())
                .set("security_group_rule_id", &r.rule_ids)
        } else {
            Change::new(Action::NoOp, "aws_security_group_rule", name).because("it was there before the apply")
        });
    }
    plan
}

fn subnets_step(rec: &ApplyRecord) -> StepPlan {
    let mut plan = StepPlan::new(ids::REMOVE_POD_SUBNETS, "delete the pod subnets podnet created");
    for s in &rec.subnets {
        let name = format!("{} ({} in {})", s.subnet_id, s.cidr, s.availability_zone);
        plan = plan.with(match &s.found {
            None => Change::new(Action::Delete, "aws_subnet", name),
            Some(f) => Change::new(Action::Update, "aws_subnet", name)
                .change("route_table_id", &s.route_table_id, &f.route_table_id)
                .change("tags", "podnet's", &f.tags)
                .because("it existed before the apply: put back, not deleted"),
        });
    }
    plan
}

fn association_step(rec: &ApplyRecord) -> StepPlan {
    let plan = StepPlan::new(ids::DISASSOCIATE_CIDR, "remove the secondary CIDR from the VPC");
    let Some(a) = &rec.association else {
        return plan.note("the apply did not associate a CIDR");
    };
    let name = format!("{} on {}", a.cidr, a.vpc_id);
    plan.with(if a.created == Some(true) {
        Change::new(Action::Delete, "aws_vpc_ipv4_cidr_block_association", name)
            .set("association_id", &a.association_id)
    } else {
        Change::new(Action::NoOp, "aws_vpc_ipv4_cidr_block_association", name).because("it was there before the apply")
    })
}
