//! Rollback planning on the hand-built reference discovery, as it is after
//! the seed plan was applied.

use crate::aws::ec2::{CidrAssociation, RuleSource, Tags};
use crate::engine::Action;
use crate::planner::tests::seed::{net, rule, seed, seed_spec, subnet};
use crate::steps::Prior;
use crate::steps::associate_cidr::AssociateCidrOutputs;
use crate::steps::eniconfigs::AppliedEniConfig;
use crate::steps::karpenter::ConfigureKarpenterOutputs;
use crate::steps::pod_subnets::{FoundSubnet, PodSubnet};
use crate::steps::security_groups::PatchedRule;

use super::plan::{ids, plan};
use super::record::ApplyRecord;

const POD_CIDR: &str = "100.64.0.0/16";

fn pod_subnet(id: &str, cidr: &str, az: &str) -> PodSubnet {
    PodSubnet {
        availability_zone: az.into(),
        cidr: net(cidr),
        subnet_id: id.into(),
        route_table_id: "rtb-private".into(),
        association_id: Some(format!("rtbassoc-{id}")),
        created: Some(true),
        found: None,
    }
}

fn patched(group: &str, port: i32, id: &str, created: bool) -> PatchedRule {
    PatchedRule {
        group_id: group.into(),
        group_name: group.trim_start_matches("sg-").into(),
        protocol: "tcp".into(),
        from_port: Some(port),
        to_port: Some(port),
        cidr: net(POD_CIDR),
        rule_ids: vec![id.into()],
        created,
    }
}

/// What the seed apply's journal records.
fn record() -> ApplyRecord {
    ApplyRecord {
        association: Some(AssociateCidrOutputs {
            vpc_id: "vpc-1".into(),
            cidr: net(POD_CIDR),
            association_id: "vpc-cidr-assoc-2".into(),
            created: Some(true),
        }),
        rules: vec![
            patched("sg-rds", 3306, "sgr-rds-pods", true),
            patched("sg-vpce", 443, "sgr-vpce-pods", true),
        ],
        subnets: vec![
            pod_subnet("subnet-p1", "100.64.1.0/24", "ap-northeast-2a"),
            pod_subnet("subnet-p2", "100.64.2.0/24", "ap-northeast-2c"),
        ],
        eniconfigs: vec![],
        karpenter: Some(ConfigureKarpenterOutputs {
            skipped: false,
            namespace: Some("kube-system".into()),
            deployment: Some("karpenter".into()),
            reserved_enis: Some(1),
            reserved_enis_before: Some(Prior::of(None)),
            ..ConfigureKarpenterOutputs::default()
        }),
        addon: None,
    }
}

/// The seed cluster after the apply: the block, the subnets (tagged), the rules.
fn applied() -> crate::discovery::Discovery {
    let mut d = seed();
    d.vpc.cidr_associations.push(CidrAssociation {
        association_id: "vpc-cidr-assoc-2".into(),
        cidr: net(POD_CIDR),
        state: "associated".into(),
    });
    let owned = [("podnet.io/cluster", "podnet-demo")];
    d.subnets
        .push(subnet("subnet-p1", "100.64.1.0/24", "ap-northeast-2a", &owned));
    d.subnets
        .push(subnet("subnet-p2", "100.64.2.0/24", "ap-northeast-2c", &owned));
    for (g, port, id) in [("sg-rds", 3306, "sgr-rds-pods"), ("sg-vpce", 443, "sgr-vpce-pods")] {
        let mut r = rule("tcp", port, port, RuleSource::Cidr(net(POD_CIDR)));
        r.rule_id = Some(id.into());
        d.security_groups
            .iter_mut()
            .find(|x| x.id == g)
            .unwrap()
            .ingress
            .push(r);
    }
    d
}

fn inputs() -> crate::steps::MigrationInputs {
    crate::planner::plan(&seed_spec(), &seed()).inputs
}

fn actions(p: &super::RollbackPlan, step: &str) -> Vec<(Action, String)> {
    p.steps
        .iter()
        .find(|s| s.step == step)
        .map(|s| s.changes.iter().map(|c| (c.action, c.name.clone())).collect())
        .unwrap_or_default()
}

#[test]
fn the_seed_apply_is_undone_in_reverse_with_nothing_to_decide() {
    let p = plan(&inputs(), &record(), &applied());
    assert!(!p.has_errors(), "{:#?}", p.findings);
    let order: Vec<&str> = p.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        order,
        [
            ids::RESTORE_VPC_CNI,
            ids::RESTORE_KARPENTER,
            ids::REPLACE_NODES,
            ids::REMOVE_ENICONFIGS,
            ids::DELETE_POD_ENIS,
            ids::REVOKE_RULES,
            ids::REMOVE_POD_SUBNETS,
            ids::DISASSOCIATE_CIDR,
        ]
    );
    assert_eq!(
        actions(&p, ids::REVOKE_RULES).iter().map(|a| a.0).collect::<Vec<_>>(),
        [Action::Delete, Action::Delete]
    );
    assert_eq!(actions(&p, ids::REMOVE_POD_SUBNETS).len(), 2);
    assert_eq!(actions(&p, ids::DISASSOCIATE_CIDR)[0].0, Action::Delete);
    assert_eq!(actions(&p, ids::RESTORE_KARPENTER)[0].0, Action::Update);
}

#[test]
fn a_rule_for_the_pod_cidr_added_by_hand_stops_the_rollback_naming_it() {
    let mut d = applied();
    let mut r = rule("tcp", 5432, 5432, RuleSource::Cidr(net(POD_CIDR)));
    r.rule_id = Some("sgr-by-hand".into());
    d.security_groups
        .iter_mut()
        .find(|g| g.id == "sg-lb")
        .unwrap()
        .ingress
        .push(r);
    let p = plan(&inputs(), &record(), &d);
    assert!(p.has_errors());
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "rollback.foreign-rule")
        .expect("the rule");
    assert!(f.reason.contains("sg-lb") && f.reason.contains("5432"), "{}", f.reason);
}

#[test]
fn a_subnet_in_the_cidr_that_podnet_did_not_create_stops_the_rollback() {
    let mut d = applied();
    d.subnets
        .push(subnet("subnet-theirs", "100.64.9.0/24", "ap-northeast-2a", &[]));
    let p = plan(&inputs(), &record(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "rollback.foreign-subnet")
        .expect("the subnet");
    assert!(f.reason.contains("subnet-theirs"), "{}", f.reason);
}

#[test]
fn a_created_subnet_that_lost_its_tag_is_not_deleted() {
    let mut d = applied();
    d.subnets.iter_mut().find(|s| s.id == "subnet-p1").unwrap().tags = Tags::new();
    let p = plan(&inputs(), &record(), &d);
    assert!(
        p.findings.iter().any(|f| f.id == "rollback.untagged-subnet"),
        "{:#?}",
        p.findings
    );
}

#[test]
fn what_existed_before_the_apply_is_put_back_not_deleted() {
    let mut rec = record();
    rec.subnets[1].created = Some(false);
    rec.subnets[1].found = Some(FoundSubnet {
        subnet_id: "subnet-p2".into(),
        tags: Tags::new(),
        route_table_id: None,
    });
    rec.rules[1].created = false;
    rec.association.as_mut().unwrap().created = Some(false);
    rec.eniconfigs.push(AppliedEniConfig {
        name: "ap-northeast-2a".into(),
        subnet: "subnet-p1".into(),
        security_groups: vec![],
        created: Some(true),
        found: None,
    });
    let p = plan(&inputs(), &rec, &applied());
    assert!(!p.has_errors(), "{:#?}", p.findings);
    let subnets: Vec<Action> = actions(&p, ids::REMOVE_POD_SUBNETS).iter().map(|a| a.0).collect();
    assert_eq!(subnets, [Action::Delete, Action::Update]);
    let rules: Vec<Action> = actions(&p, ids::REVOKE_RULES).iter().map(|a| a.0).collect();
    assert_eq!(rules, [Action::Delete, Action::NoOp]);
    assert_eq!(actions(&p, ids::DISASSOCIATE_CIDR)[0].0, Action::NoOp);
    assert_eq!(actions(&p, ids::REMOVE_ENICONFIGS)[0].0, Action::Delete);
}

#[test]
fn node_subnets_too_small_for_the_pods_coming_back_are_a_warning_with_the_numbers() {
    let mut d = applied();
    let zones = super::capacity::needs(&d, net(POD_CIDR));
    assert!(!zones.is_empty(), "the seed's nodes are in node subnets");
    assert!(zones.iter().all(|z| z.nodes > 0 && z.need >= z.pods), "{zones:#?}");
    for s in d.subnets.iter_mut().filter(|s| !net(POD_CIDR).contains(&s.cidr)) {
        s.available_ips = 100_000;
    }
    let p = plan(&inputs(), &record(), &d);
    assert!(
        !p.findings.iter().any(|f| f.id == "rollback.node-subnet-capacity"),
        "{:#?}",
        p.findings
    );
    for s in d.subnets.iter_mut().filter(|s| !net(POD_CIDR).contains(&s.cidr)) {
        s.available_ips = 0;
    }
    let p = plan(&inputs(), &record(), &d);
    let warned: Vec<&crate::planner::Finding> = p
        .findings
        .iter()
        .filter(|f| f.id == "rollback.node-subnet-capacity")
        .collect();
    assert_eq!(warned.len(), zones.iter().filter(|z| z.need > 0).count(), "{warned:#?}");
    assert!(warned.iter().all(|f| f.severity == crate::planner::Severity::Warning));
    assert!(warned[0].reason.contains("0 free addresses"), "{}", warned[0].reason);
    assert!(!p.has_errors(), "a warning: the estimate does not stop the rollback");
}
