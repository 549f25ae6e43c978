//! Step contract tests, after omicron's saga tests, over in-memory fakes
//! instead of moto (fast, no sandbox): every EC2 step run twice has no
//! extra effect, and every one failed at each of its calls in turn — before
//! the call's effect, and after it with the answer lost — then run again
//! (as `podnet resume` does, with what it checkpointed) ends in exactly the
//! state of an uninterrupted run. `kube_steps` holds the same contract for
//! the Kubernetes- and EKS-facing steps, on the sandbox without moto.

mod fake_ec2;
mod kube_steps;
mod rollback_ec2;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;

use super::{Env, PodSubnetInput, SgPatchInput, Waits};
use crate::aws::AwsClients;
use crate::aws::AwsError;
use crate::aws::ec2::Tags;
use crate::aws::eks::{AddonInfo, AddonUpdate, ClusterInfo, EksApi, LaunchTemplateRef, NodegroupInfo, UpdateInfo};
use crate::engine::{Checkpoints, ErrorClass, Journal, Recorded, Silent, Step, StepCtx, StepError};
use fake_ec2::{FakeEc2, Fault, VPC, World};

/// The EKS API is not what these steps call: every call is refused.
struct NoEks;

fn not_eks(op: &'static str) -> AwsError {
    AwsError {
        class: ErrorClass::Invalid,
        service: "eks",
        operation: op,
        resource: None,
        code: Some("NotModelled".into()),
        message: "the EC2 contract tests call no EKS API".into(),
        status: None,
    }
}

#[async_trait::async_trait]
impl EksApi for NoEks {
    async fn describe_cluster(&self, _: &str) -> Result<ClusterInfo, AwsError> {
        Err(not_eks("DescribeCluster"))
    }
    async fn list_nodegroups(&self, _: &str) -> Result<Vec<String>, AwsError> {
        Err(not_eks("ListNodegroups"))
    }
    async fn describe_nodegroup(&self, _: &str, _: &str) -> Result<NodegroupInfo, AwsError> {
        Err(not_eks("DescribeNodegroup"))
    }
    async fn describe_addon(&self, _: &str, _: &str) -> Result<Option<AddonInfo>, AwsError> {
        Err(not_eks("DescribeAddon"))
    }
    async fn update_addon(&self, _: &str, _: &str, _: &AddonUpdate) -> Result<UpdateInfo, AwsError> {
        Err(not_eks("UpdateAddon"))
    }
    async fn describe_update(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<UpdateInfo, AwsError> {
        Err(not_eks("DescribeUpdate"))
    }
    async fn update_nodegroup_version(
        &self,
        _: &str,
        _: &str,
        _: Option<&LaunchTemplateRef>,
        _: bool,
        _: &str,
    ) -> Result<UpdateInfo, AwsError> {
        Err(not_eks("UpdateNodegroupVersion"))
    }
}

fn env(ec2: Arc<FakeEc2>) -> Env {
    Env {
        aws: AwsClients {
            ec2,
            eks: Arc::new(NoEks),
            access: Arc::new(crate::aws::access::FakeAccess::default()),
            autoscaling: Arc::new(crate::aws::autoscaling::FakeAutoScaling::default()),
        },
        kube: None,
        kube_user: None,
        waits: Waits {
            poll: Duration::from_millis(1),
            cidr_association: Duration::from_secs(5),
            ..Waits::default()
        },
        progress: Arc::new(Silent),
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test CIDR")
}

/// The reference scenario's EC2 steps: the CIDR, two rules, two subnets.
fn ec2_steps() -> Vec<Box<dyn Step<Env>>> {
    let patch = |group: &str, port: i32| SgPatchInput {
        group_id: group.into(),
        group_name: group.trim_start_matches("sg-").into(),
        protocol: "tcp".into(),
        from_port: Some(port),
        to_port: Some(port),
        cidr: net("100.64.0.0/16"),
        description: "podnet: pod CIDR".into(),
    };
    let subnet = |az: &str, cidr: &str, rt: &str| PodSubnetInput {
        availability_zone: az.into(),
        cidr: net(cidr),
        name: format!("pods-{az}"),
        route_table_id: rt.into(),
        tags: Tags::from([
            ("Name".to_string(), format!("pods-{az}")),
            ("kubernetes.io/role/cni".to_string(), "1".to_string()),
            (crate::spec::OWNER_TAG.to_string(), "prod".to_string()),
        ]),
    };
    vec![
        Box::new(super::associate_cidr::AssociateCidr {
            vpc_id: VPC.into(),
            cidr: net("100.64.0.0/16"),
            quota: 5,
        }),
        Box::new(super::security_groups::PatchSecurityGroups {
            vpc_id: VPC.into(),
            patches: vec![patch("sg-rds", 3306), patch("sg-vpce", 443)],
        }),
        Box::new(super::pod_subnets::CreatePodSubnets {
            vpc_id: VPC.into(),
            subnets: vec![
                subnet("ap-northeast-2a", "100.64.1.0/24", "rtb-a"),
                subnet("ap-northeast-2c", "100.64.2.0/24", "rtb-c"),
            ],
        }),
    ]
}

/// Runs the steps as the engine does (outputs passed on, each step's
/// checkpoint carried to its next attempt); a failed step is run again, as
/// `podnet resume` would, up to `resumes` times in all.
async fn run(ec2: &Arc<FakeEc2>, steps: &[Box<dyn Step<Env>>], resumes: usize) -> Result<(), StepError> {
    run_outputs(ec2, steps, resumes).await.map(|_| ())
}

/// [`run`], keeping every step's recorded output.
async fn run_outputs(
    ec2: &Arc<FakeEc2>,
    steps: &[Box<dyn Step<Env>>],
    mut resumes: usize,
) -> Result<BTreeMap<String, Recorded>, StepError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Mutex::new(Journal::open(&dir.path().join("journal.jsonl")).expect("journal").0);
    let env = env(ec2.clone());
    let mut outputs: BTreeMap<String, Recorded> = BTreeMap::new();
    for step in steps {
        let mut progress = Checkpoints::new();
        let out = loop {
            let mut ctx = StepCtx::running(step.id(), &outputs, progress.clone(), &journal);
            let r = step.apply(&env, &mut ctx).await;
            progress = ctx.into_progress();
            match r {
                Ok(out) => break out,
                Err(e) if resumes > 0 => {
                    assert_eq!(
                        e.class,
                        ErrorClass::Transient,
                        "{}: only the injected fault may fail: {e}",
                        step.id()
                    );
                    resumes -= 1;
                }
                Err(e) => return Err(e),
            }
        };
        outputs.insert(step.id().to_string(), out);
    }
    Ok(outputs)
}

/// What the outputs say podnet created, step by step: the record a
/// rollback undoes.
fn created(outputs: &BTreeMap<String, Recorded>) -> Vec<String> {
    let flag = |v: &Recorded| v["created"].to_string();
    let mut out = vec![format!("association {}", flag(&outputs["associate-cidr"]))];
    for r in outputs["patch-security-groups"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(format!("rule {} {}", r["group_id"], flag(r)));
    }
    for sn in outputs["create-pod-subnets"]["subnets"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(format!("subnet {} {} found {}", sn["cidr"], flag(sn), sn["found"]));
    }
    out
}

/// The seed with some of the plan already in place: sg-vpce admits
/// 100.64.0.0/10 on 443, and 100.64.2.0/24 exists, untagged, on the main
/// table.
fn partly_there() -> Arc<FakeEc2> {
    let ec2 = Arc::new(FakeEc2::seed());
    ec2.edit(|w| {
        let g = w.groups.iter_mut().find(|g| g.id == "sg-vpce").expect("sg-vpce");
        g.ingress.push(crate::aws::ec2::IngressRule {
            rule_id: Some("sgr-wide".into()),
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            source: crate::aws::ec2::RuleSource::Cidr(net("100.64.0.0/10")),
            description: None,
        });
        let mut sn = w.subnets[1].clone();
        sn.id = "subnet-theirs".into();
        sn.cidr = net("100.64.2.0/24");
        w.subnets.push(sn);
    });
    ec2
}

#[tokio::test]
async fn outputs_record_what_podnet_created_and_what_it_found() {
    let outputs = run_outputs(&partly_there(), &ec2_steps(), 0)
        .await
        .expect("a clean run");
    assert_eq!(
        created(&outputs),
        [
            "association true",
            "rule \"sg-rds\" true",
            "rule \"sg-vpce\" false",
            "subnet \"100.64.1.0/24\" true found null",
            "subnet \"100.64.2.0/24\" false found {\"route_table_id\":null,\"subnet_id\":\"subnet-theirs\",\"tags\":{}}",
        ]
    );
}

/// A unit that fails after its own side effect and is run again must not
/// take what it made for something it found: every step failed at each
/// call in turn records the same as an uninterrupted run.
#[tokio::test]
async fn a_resumed_step_records_what_it_created_as_an_uninterrupted_one() {
    let ec2 = partly_there();
    let want = created(&run_outputs(&ec2, &ec2_steps(), 0).await.expect("a clean run"));
    let calls = ec2.calls();
    for at in 0..calls {
        for lost in [false, true] {
            let ec2 = partly_there();
            ec2.fail(Fault { at, lost });
            let outputs = run_outputs(&ec2, &ec2_steps(), 1)
                .await
                .unwrap_or_else(|e| panic!("call {at} (lost: {lost}): {e}"));
            assert_eq!(created(&outputs), want, "call {at} (lost: {lost})");
        }
    }
}

/// The end state, calls and mutations of an uninterrupted run.
async fn reference() -> (World, usize, usize) {
    let ec2 = Arc::new(FakeEc2::seed());
    run(&ec2, &ec2_steps(), 0).await.expect("a clean run succeeds");
    (ec2.world(), ec2.calls(), ec2.mutations())
}

#[tokio::test]
async fn every_ec2_step_run_twice_has_no_extra_effect() {
    let (want, _, mutations) = reference().await;
    assert_eq!(
        mutations, 7,
        "1 association, 2 rules, 2 subnets, 2 route table associations"
    );
    let ec2 = Arc::new(FakeEc2::seed());
    let steps = ec2_steps();
    run(&ec2, &steps, 0).await.unwrap();
    for step in &steps {
        run(&ec2, std::slice::from_ref(step), 0).await.unwrap();
        assert_eq!(
            ec2.mutations(),
            mutations,
            "{} changed something the second time",
            step.id()
        );
    }
    assert_eq!(ec2.world(), want);
}

#[tokio::test]
async fn every_ec2_step_failed_at_each_call_resumes_to_the_same_end_state() {
    let (want, calls, mutations) = reference().await;
    for at in 0..calls {
        for lost in [false, true] {
            let ec2 = Arc::new(FakeEc2::seed());
            ec2.fail(Fault { at, lost });
            // Without a resume the fault stops the run...
            let stopped = run(&ec2, &ec2_steps(), 0).await;
            assert!(stopped.is_err(), "call {at} (lost: {lost}) did not fail the run");
            // ...and resuming from where it stopped converges.
            let ec2 = Arc::new(FakeEc2::seed());
            ec2.fail(Fault { at, lost });
            run(&ec2, &ec2_steps(), 1)
                .await
                .unwrap_or_else(|e| panic!("call {at} (lost: {lost}): the resumed run failed: {e}"));
            assert_eq!(ec2.world(), want, "call {at} (lost: {lost}) ended elsewhere");
            assert_eq!(ec2.mutations(), mutations, "call {at} (lost: {lost}) repeated a change");
        }
    }
}
