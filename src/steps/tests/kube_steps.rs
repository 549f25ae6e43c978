//! Contract tests for the Kubernetes- and EKS-facing steps
//! (`apply-eniconfigs`, `configure-karpenter`, `enable-custom-networking`)
//! against the sandbox started without moto: its Kubernetes API, its EKS and
//! its controllers (rollouts) are in-process, and EC2 is the in-memory fake,
//! so no emulator process runs. As for the EC2 steps: each step run twice
//! changes nothing the second time, and the run failed at each of these
//! steps' writes and at the first of each kind of read — refused with a 403
//! that no retry gets past (a wait's watch alone re-opens) — then resumed,
//! ends in the state of an uninterrupted run with no write repeated.
//! (Throttling and 5xx are retried where they happen; `tests/storms.rs` runs
//! the whole migration through them.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::Api;
use podnet_sandbox::{Fault, Sandbox, SandboxOptions, Service};
use serde_json::Value;

use super::fake_ec2::{FakeEc2, VPC};
use super::{ec2_steps, net};
use crate::aws::AwsClients;
use crate::aws::eks::SdkEks;
use crate::engine::{Checkpoints, Journal, Recorded, Silent, Step, StepCtx, StepError};
use crate::k8s::crds::{Ec2NodeClass, EniConfig};
use crate::steps::{Env, Waits, addon, eniconfigs, karpenter};

fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions {
        moto: false,
        ..Default::default()
    })
    .expect("the sandbox starts without moto")
}

async fn env(sb: &Sandbox, ec2: Arc<FakeEc2>) -> Env {
    let kubeconfig = kube::config::Kubeconfig::read_from(sb.kubeconfig_path()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kube config");
    let eks = aws_sdk_eks::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(sb.region().to_string()))
        .endpoint_url(sb.eks_url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTEST", "test", None, None, "test",
        ))
        .build();
    Env {
        aws: AwsClients {
            ec2,
            eks: Arc::new(SdkEks::new(aws_sdk_eks::Client::from_conf(eks))),
            access: Arc::new(crate::aws::access::FakeAccess::default()),
            autoscaling: Arc::new(crate::aws::autoscaling::FakeAutoScaling::default()),
        },
        kube: Some(kube::Client::try_from(config).expect("kube client")),
        kube_user: None,
        waits: Waits {
            poll: Duration::from_millis(50),
            ..Waits::default()
        },
        progress: Arc::new(Silent),
    }
}

/// The reference scenario's Kubernetes-facing steps, as the planner makes them.
fn kube_steps(cluster: &str) -> Vec<Box<dyn Step<Env>>> {
    vec![
        Box::new(eniconfigs::ApplyEniConfigs {
            vpc_id: VPC.into(),
            eniconfigs: [
                ("ap-northeast-2a", "100.64.1.0/24"),
                ("ap-northeast-2c", "100.64.2.0/24"),
            ]
            .into_iter()
            .map(|(az, cidr)| eniconfigs::EniConfigInput {
                availability_zone: az.into(),
                cidr: net(cidr),
            })
            .collect(),
            security_groups: vec!["sg-cluster".into()],
            adopt_existing: false,
        }),
        Box::new(karpenter::ConfigureKarpenter {
            karpenter: Some(karpenter::KarpenterInputs {
                namespace: "kube-system".into(),
                deployment: "karpenter".into(),
                container: "controller".into(),
                helm_managed: true,
                reserved_enis: 1,
                max_pods: None,
                node_classes: vec![],
                // As the planner writes it: a value per EC2NodeClass.
                class_max_pods: [("default".to_string(), 20)].into(),
            }),
            skip_reason: String::new(),
        }),
        Box::new(addon::EnableCustomNetworking {
            cluster: cluster.into(),
            cni: addon::VpcCniInputs {
                managed_addon: true,
                resolve_conflicts: "OVERWRITE".into(),
                env: BTreeMap::from([
                    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".into(), "true".into()),
                    ("ENI_CONFIG_LABEL_DEF".into(), "topology.kubernetes.io/zone".into()),
                ]),
            },
        }),
    ]
}

/// Runs the EC2 steps (for their outputs), then the Kubernetes ones; a
/// failed step is run again with its checkpoint, as `podnet resume` does,
/// after the sandbox's faults are cleared. Returns how many resumes it took.
async fn run(sb: &Sandbox, env: &Env, steps: &[Box<dyn Step<Env>>]) -> Result<usize, StepError> {
    run_outputs(sb, env, steps).await.map(|(resumes, _)| resumes)
}

/// [`run`], with every step's recorded output.
async fn run_outputs(
    sb: &Sandbox,
    env: &Env,
    steps: &[Box<dyn Step<Env>>],
) -> Result<(usize, BTreeMap<String, Recorded>), StepError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Mutex::new(Journal::open(&dir.path().join("journal.jsonl")).expect("journal").0);
    let mut outputs: BTreeMap<String, Recorded> = BTreeMap::new();
    let mut resumes = 0;
    for step in ec2_steps().iter().chain(steps) {
        let mut progress = Checkpoints::new();
        let out = loop {
            let mut ctx = StepCtx::running(step.id(), &outputs, progress.clone(), &journal);
            let r = step.apply(env, &mut ctx).await;
            progress = ctx.into_progress();
            match r {
                Ok(out) => break out,
                Err(_) if resumes == 0 => {
                    sb.clear_faults();
                    resumes += 1;
                }
                Err(e) => return Err(e),
            }
        };
        outputs.insert(step.id().to_string(), out);
    }
    Ok((resumes, outputs))
}

/// What the outputs record of the cluster before podnet changed it.
fn befores(outputs: &BTreeMap<String, Recorded>) -> Value {
    serde_json::json!({
        "eniconfigs": outputs["apply-eniconfigs"]["eniconfigs"]
            .as_array()
            .map(|a| a.iter().map(|e| (e["name"].clone(), e["created"].clone(), e["found"].clone())).collect::<Vec<_>>()),
        "reserved_enis": outputs["configure-karpenter"]["reserved_enis_before"],
        "max_pods": outputs["configure-karpenter"]["max_pods_before"],
        "addon": outputs["enable-custom-networking"]["configuration_values_before"],
        "addon_env": outputs["enable-custom-networking"]["env_before"],
    })
}

/// What the steps leave behind, read back from the sandbox.
async fn end_state(env: &Env) -> Value {
    let client = env.kube.clone().expect("kube");
    let eniconfigs: Vec<_> = Api::<EniConfig>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("ENIConfigs")
        .items
        .into_iter()
        .map(|e| (e.metadata.name, e.spec))
        .collect();
    let classes: Vec<_> = Api::<Ec2NodeClass>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("EC2NodeClasses")
        .items
        .into_iter()
        .map(|c| (c.metadata.name, c.spec.kubelet))
        .collect();
    let karpenter = Api::<Deployment>::namespaced(client.clone(), "kube-system")
        .get("karpenter")
        .await
        .expect("karpenter");
    let aws_node = Api::<DaemonSet>::namespaced(client, "kube-system")
        .get("aws-node")
        .await
        .expect("aws-node");
    // Less the VPC id, which each moto-less sandbox makes up anew.
    let env_of = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| -> Value {
        let vars = spec.and_then(|s| s.containers[0].env.clone()).unwrap_or_default();
        serde_json::to_value(vars.into_iter().filter(|v| v.name != "VPC_ID").collect::<Vec<_>>()).expect("env")
    };
    serde_json::json!({
        "eniconfigs": eniconfigs,
        "nodeclasses": classes,
        "karpenter": env_of(karpenter.spec.as_ref().and_then(|s| s.template.spec.as_ref())),
        "aws-node": env_of(aws_node.spec.as_ref().and_then(|s| s.template.spec.as_ref())),
    })
}

/// The writes that reached the cluster or EKS (not refused by a fault).
fn writes(sb: &Sandbox) -> Vec<String> {
    sb.calls()
        .into_iter()
        .filter(|c| matches!(c.service, Service::Kube | Service::Eks) && c.mutating && !c.injected && c.status < 400)
        .map(|c| c.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_steps_run_twice_change_nothing_and_resume_from_a_failure_at_any_write() {
    let sb = sandbox();
    let env = env(&sb, Arc::new(FakeEc2::seed())).await;
    let steps = kube_steps(sb.cluster_name());
    sb.clear_calls();
    let (resumes, outputs) = run_outputs(&sb, &env, &steps).await.expect("a clean run");
    assert_eq!(resumes, 0);
    let want_befores = befores(&outputs);
    assert_eq!(
        want_befores["reserved_enis"],
        serde_json::json!({ "value": null }),
        "{want_befores}"
    );
    assert_eq!(
        want_befores["eniconfigs"],
        serde_json::json!([["ap-northeast-2a", true, null], ["ap-northeast-2c", true, null]])
    );
    assert!(want_befores["addon"]["value"].is_string(), "{want_befores}");
    assert_eq!(
        want_befores["addon_env"],
        serde_json::json!({ "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": null, "ENI_CONFIG_LABEL_DEF": null }),
        "{want_befores}"
    );
    assert_eq!(
        want_befores["max_pods"],
        serde_json::json!({ "default": null }),
        "{want_befores}"
    );
    assert_eq!(
        outputs["configure-karpenter"]["class_max_pods"],
        serde_json::json!({ "default": 20 })
    );
    let want_writes = writes(&sb);
    assert!(
        want_writes.iter().filter(|a| *a == "UpdateAddon").count() == 1,
        "{want_writes:?}"
    );
    let calls: Vec<(Service, String, bool)> = sb
        .calls()
        .into_iter()
        .filter(|c| matches!(c.service, Service::Kube | Service::Eks))
        .map(|c| (c.service, c.action, c.mutating))
        .collect();
    let want = end_state(&env).await;

    // Run twice: the second run writes nothing.
    for step in &steps {
        sb.clear_calls();
        run(&sb, &env, std::slice::from_ref(step)).await.expect("a second run");
        assert_eq!(writes(&sb), Vec::<String>::new(), "{} wrote again", step.id());
    }
    assert_eq!(end_state(&env).await, want);

    // Fail each write, and the first read of each kind, in a fresh sandbox.
    let mut seen = std::collections::HashMap::new();
    let mut faults = 0;
    for (service, action, mutating) in calls {
        let nth = seen.entry((service, action.clone())).or_insert(0u32);
        *nth += 1;
        if !mutating && *nth > 1 {
            continue;
        }
        let (status, code) = match service {
            Service::Eks => (403, "AccessDeniedException"),
            _ => (403, "Forbidden"),
        };
        let sb = sandbox();
        let env = env_for(&sb).await;
        sb.clear_calls();
        sb.inject_fault(Fault::new(service, action.clone(), 1, status, code).after(*nth - 1));
        let (resumes, outputs) = run_outputs(&sb, &env, &kube_steps(sb.cluster_name()))
            .await
            .unwrap_or_else(|e| panic!("{action} #{nth}: the resumed run failed: {e}"));
        assert_eq!(
            befores(&outputs),
            want_befores,
            "{action} #{nth}: recorded another before"
        );
        // A read the reference run made only because of timing (one more
        // watch while a rollout finished) may not come again.
        if !sb.calls().iter().any(|c| c.injected) {
            eprintln!("{action} #{nth}: not made in this run");
            assert_eq!(end_state(&env).await, want, "{action} #{nth} ended elsewhere");
            continue;
        }
        assert_eq!(
            writes(&sb),
            want_writes,
            "{action} #{nth}: writes differ (resumes: {resumes})"
        );
        sb.clear_faults();
        assert_eq!(end_state(&env).await, want, "{action} #{nth} ended elsewhere");
        faults += 1;
        eprintln!("failed {action} #{nth}: {resumes} resume(s), same end state and writes");
    }
    assert!(faults >= 8, "only {faults} calls were failed");
}

async fn env_for(sb: &Sandbox) -> Env {
    env(sb, Arc::new(FakeEc2::seed())).await
}

/// A 409 on podnet's server-side apply of the Karpenter controller (another
/// writer got in between) is the same apply again, not a failed step; a
/// 429 with `Retry-After` and a 503 on the reads before it are retried too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_karpenter_gets_past_a_conflict_and_throttled_reads_without_a_resume() {
    let sb = sandbox();
    let env = env(&sb, Arc::new(FakeEc2::seed())).await;
    sb.inject_fault(Fault::new(Service::Kube, "patch deployments", 1, 409, "Conflict"));
    sb.inject_fault(Fault {
        retry_after: Some(1),
        ..Fault::new(Service::Kube, "get deployments", 1, 429, "TooManyRequests")
    });
    sb.inject_fault(Fault::new(
        Service::Kube,
        "list ec2nodeclasses",
        1,
        503,
        "ServiceUnavailable",
    ));
    let steps = kube_steps(sb.cluster_name());
    let karpenter = steps
        .iter()
        .find(|s| s.id() == "configure-karpenter")
        .expect("the step");
    sb.clear_calls();
    let resumes = run(&sb, &env, std::slice::from_ref(karpenter))
        .await
        .expect("configured");
    assert_eq!(resumes, 0, "retried in place, not resumed");
    let mut injected: Vec<String> = sb
        .calls()
        .into_iter()
        .filter(|c| c.injected)
        .map(|c| c.action)
        .collect();
    injected.sort();
    assert_eq!(
        injected,
        ["get deployments", "list ec2nodeclasses", "patch deployments"],
        "every fault was met"
    );
    let state = end_state(&env).await;
    assert!(
        state["karpenter"]
            .as_array()
            .expect("env")
            .iter()
            .any(|v| v["name"] == "RESERVED_ENIS" && v["value"] == "1"),
        "{state}"
    );
}
