//! The rollback's EC2 units under the same contract as apply's: after the
//! reference apply on a VPC where part of the plan was already in place,
//! the rollback gives back exactly the VPC as it was (what podnet found
//! stays, what it created goes, an adopted subnet gets its tags and route
//! table back); run twice it changes nothing more; failed at each of its
//! calls in turn (before the effect, and after it with the answer lost) and
//! run again it ends in the same state. ENIs in the pod subnets are deleted
//! only when they are the VPC CNI's and detached.

use std::sync::Arc;

use super::fake_ec2::{FakeEc2, Fault, World};
use super::{ec2_steps, partly_there, run, run_outputs};
use crate::aws::ec2::{CNI_ENI_CLUSTER_TAG, CNI_ENI_NODE_TAG, NetworkInterfaceInfo};
use crate::engine::{ErrorClass, Step};
use crate::rollback::remove::{DeletePodEnis, DisassociateCidr, RemovePodSubnets, RevokeRules};
use crate::steps::Env;
use crate::steps::associate_cidr::AssociateCidrOutputs;
use crate::steps::pod_subnets::CreatePodSubnetsOutputs;
use crate::steps::security_groups::PatchSecurityGroupsOutputs;

/// What the comparison covers: everything but the fake's id counter.
fn shape(w: &World) -> impl PartialEq + std::fmt::Debug + use<> {
    let mut tables = w.route_tables.clone();
    for t in &mut tables {
        // Association ids are minted anew; which subnet uses which table is the state.
        for a in &mut t.associations {
            a.id.clear();
        }
    }
    (
        w.vpc.clone(),
        w.subnets.clone(),
        tables,
        w.groups.clone(),
        w.enis.clone(),
    )
}

/// Applies the reference EC2 steps to `ec2` and returns the rollback's EC2
/// units built from what they recorded.
async fn applied(ec2: &Arc<FakeEc2>) -> Vec<Box<dyn Step<Env>>> {
    let outputs = run_outputs(ec2, &ec2_steps(), 0).await.expect("the apply");
    let decode = |step: &str| outputs[step].clone();
    let association: AssociateCidrOutputs = serde_json::from_value(decode("associate-cidr")).expect("association");
    let rules: PatchSecurityGroupsOutputs = serde_json::from_value(decode("patch-security-groups")).expect("rules");
    let subnets: CreatePodSubnetsOutputs = serde_json::from_value(decode("create-pod-subnets")).expect("subnets");
    let vpc_id = association.vpc_id.clone();
    vec![
        Box::new(DeletePodEnis {
            cluster: "prod".into(),
            subnet_ids: subnets
                .subnets
                .iter()
                .filter(|s| s.created == Some(true))
                .map(|s| s.subnet_id.clone())
                .collect(),
        }),
        Box::new(RevokeRules {
            vpc_id: vpc_id.clone(),
            rules: rules.rules,
        }),
        Box::new(RemovePodSubnets {
            vpc_id: vpc_id.clone(),
            subnets: subnets.subnets,
        }),
        Box::new(DisassociateCidr {
            vpc_id,
            cidr: association.cidr,
            association: Some(association),
        }),
    ]
}

/// A detached ENI the VPC CNI left in the first pod subnet.
fn leftover(ec2: &FakeEc2) {
    let subnet = ec2
        .world()
        .subnets
        .iter()
        .find(|s| s.cidr.to_string() == "100.64.1.0/24")
        .expect("the pod subnet")
        .id
        .clone();
    ec2.edit(|w| {
        w.enis.push(NetworkInterfaceInfo {
            id: "eni-leftover".into(),
            subnet_id: subnet,
            status: "available".into(),
            description: "aws-K8S-i-0dead".into(),
            attached_to: None,
            interface_type: "interface".into(),
            requester_managed: false,
            tags: [
                (CNI_ENI_NODE_TAG.to_string(), "i-0dead".to_string()),
                (CNI_ENI_CLUSTER_TAG.to_string(), "prod".to_string()),
            ]
            .into(),
        })
    });
}

/// The reference VPC with nothing of the plan in place: the rollback
/// removes everything the apply made, the CIDR block last.
fn clean() -> Arc<FakeEc2> {
    Arc::new(FakeEc2::seed())
}

/// [`partly_there`] as EC2 would have it: a subnet in 100.64.0.0/16 means
/// the block was associated before, so the apply finds it and the rollback
/// keeps it, with the adopted subnet and the rule that admitted the pods.
fn partly_there_with_block() -> Arc<FakeEc2> {
    let ec2 = partly_there();
    ec2.edit(|w| {
        w.vpc.cidr_associations.push(crate::aws::ec2::CidrAssociation {
            association_id: "vpc-cidr-assoc-theirs".into(),
            cidr: "100.64.0.0/16".parse().expect("CIDR"),
            state: "associated".into(),
        })
    });
    ec2
}

type Start = fn() -> Arc<FakeEc2>;

/// Each start, and how many changes the rollback makes from it.
const STARTS: [(&str, Start, usize); 2] = [("clean", clean, 6), ("partly there", partly_there_with_block, 5)];

/// The VPC before the apply, then the state and mutations of an
/// uninterrupted apply + leftover ENI + rollback.
async fn reference(start: Start) -> (World, usize) {
    let ec2 = start();
    let before = ec2.world();
    let units = applied(&ec2).await;
    leftover(&ec2);
    let start = ec2.mutations();
    run(&ec2, &units, 0).await.expect("the rollback");
    assert_eq!(
        shape(&ec2.world()),
        shape(&before),
        "the VPC as it was before the apply"
    );
    (before, ec2.mutations() - start)
}

/// Clean: the ENI, both rules, both subnets, the CIDR. Partly there: the
/// ENI, one rule (the other was found), one subnet deleted, the adopted
/// one's tags and route table put back, the block kept.
#[tokio::test]
async fn the_rollback_gives_back_the_vpc_as_it_was() {
    for (name, start, want) in STARTS {
        let (_, mutations) = reference(start).await;
        assert_eq!(mutations, want, "{name}");
    }
}

#[tokio::test]
async fn every_rollback_unit_run_twice_has_no_extra_effect() {
    for (name, start, _) in STARTS {
        let ec2 = start();
        let units = applied(&ec2).await;
        leftover(&ec2);
        run(&ec2, &units, 0).await.expect("the rollback");
        let (world, mutations) = (ec2.world(), ec2.mutations());
        for unit in &units {
            run(&ec2, std::slice::from_ref(unit), 0).await.expect("again");
            assert_eq!(
                ec2.mutations(),
                mutations,
                "{name}: {} changed something the second time",
                unit.id()
            );
        }
        assert_eq!(shape(&ec2.world()), shape(&world), "{name}");
    }
}

#[tokio::test]
async fn every_rollback_unit_failed_at_each_call_resumes_to_the_same_end_state() {
    for (name, start, _) in STARTS {
        let (before, mutations) = reference(start).await;
        // The rollback's calls, counted on an uninterrupted run.
        let ec2 = start();
        let units = applied(&ec2).await;
        leftover(&ec2);
        let first = ec2.calls();
        run(&ec2, &units, 0).await.expect("the rollback");
        for at in first..ec2.calls() {
            for lost in [false, true] {
                let ec2 = start();
                let units = applied(&ec2).await;
                leftover(&ec2);
                let from = ec2.mutations();
                ec2.fail(Fault { at, lost });
                run(&ec2, &units, 1)
                    .await
                    .unwrap_or_else(|e| panic!("{name}, call {at} (lost: {lost}): the resumed rollback failed: {e}"));
                let end = shape(&ec2.world());
                assert_eq!(end, shape(&before), "{name}, call {at} (lost: {lost}) ended elsewhere");
                assert_eq!(
                    ec2.mutations() - from,
                    mutations,
                    "{name}, call {at} (lost: {lost}) repeated a change"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_eni_the_cni_did_not_leave_stops_the_rollback_before_any_deletion() {
    let ec2 = Arc::new(FakeEc2::seed());
    let units = applied(&ec2).await;
    leftover(&ec2);
    ec2.edit(|w| {
        let mut lb = w.enis[0].clone();
        lb.id = "eni-elb".into();
        lb.description = "ELB app/prod/0123".into();
        lb.requester_managed = true;
        lb.tags.clear();
        w.enis.push(lb);
    });
    let start = ec2.mutations();
    let e = run(&ec2, &units, 0).await.expect_err("refused");
    assert_eq!(e.class, ErrorClass::Blocked);
    assert!(e.to_string().contains("eni-elb"), "{e}");
    assert_eq!(ec2.mutations(), start, "nothing deleted");
    assert_eq!(ec2.world().enis.len(), 2);
}

#[tokio::test]
async fn a_subnet_that_lost_podnets_tag_is_not_deleted() {
    let ec2 = Arc::new(FakeEc2::seed());
    let units = applied(&ec2).await;
    ec2.edit(|w| {
        for s in w
            .subnets
            .iter_mut()
            .filter(|s| s.cidr.to_string().starts_with("100.64."))
        {
            s.tags.remove(crate::spec::OWNER_TAG);
        }
    });
    let e = run(&ec2, &units, 0).await.expect_err("refused");
    assert_eq!(e.class, ErrorClass::Blocked);
    assert!(e.to_string().contains("podnet.io/cluster"), "{e}");
    assert_eq!(
        ec2.world()
            .subnets
            .iter()
            .filter(|s| s.cidr.to_string().starts_with("100.64."))
            .count(),
        2,
        "both pod subnets stay"
    );
}
