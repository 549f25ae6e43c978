//! Helpers shared by the tests that run the podnet binary against a sandbox:
//! starting one, running podnet in its environment, and reading EC2 back from
//! moto with its own client (never through podnet's code).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use aws_sdk_ec2::types::Filter;
use podnet_sandbox::{Sandbox, SandboxOptions, Scenario, Service};
use serde_json::Value;

pub const SEED_PLAN: &str = "plans/seed-ap-northeast-2.toml";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A sandbox whose control plane recognises a new CIDR block after 20
/// simulated minutes (13 s): long enough that the migration's
/// control-plane-reach gate still waits, short enough for every test that is
/// not about it (tests/control_plane.rs runs the seed's two hours).
pub fn start(scenario: Scenario) -> Sandbox {
    Sandbox::start(SandboxOptions {
        cidr_recognition: Some(std::time::Duration::from_secs(20 * 60)),
        ..SandboxOptions::default().with_scenario(scenario)
    })
    .expect("sandbox starts")
}

/// The three-AZ scenario (`sandbox/scenarios/three-az.toml`).
pub fn three_az() -> Scenario {
    Scenario::load(
        repo()
            .join("sandbox/scenarios/three-az.toml")
            .to_str()
            .expect("utf-8 path"),
    )
    .expect("three-az scenario")
}

pub fn podnet(sb: &Sandbox, state: &Path, plan: &Path, args: &[&str]) -> Output {
    podnet_with_env(sb, state, plan, args, &[])
}

/// podnet with extra environment, e.g. a `PODNET_CRASH_AT` crash point.
pub fn podnet_with_env(sb: &Sandbox, state: &Path, plan: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    podnet_command(sb, state, plan, args)
        .envs(env.iter().copied())
        .output()
        .expect("run podnet")
}

/// The podnet command in the sandbox's environment, not yet run (to remove
/// or add variables first).
pub fn podnet_command(sb: &Sandbox, state: &Path, plan: &Path, args: &[&str]) -> std::process::Command {
    let mut c = sb.command(env!("CARGO_BIN_EXE_podnet"));
    c.current_dir(repo())
        .arg("-f")
        .arg(plan)
        .arg("--state-dir")
        .arg(state)
        .args(["--no-progress", "--no-color"])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PODNET_FILE")
        .env_remove("PODNET_STATE_DIR");
    c
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn plan_json(sb: &Sandbox, state: &Path, plan: &Path) -> (i32, Value) {
    let o = podnet(sb, state, plan, &["--output", "json", "plan"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("plan JSON ({e}): {}", text(&o)));
    (o.status.code().unwrap_or(-1), v)
}

/// The actions planned for one step, e.g. `["create", "create"]`.
pub fn step_actions(doc: &Value, step: &str) -> Vec<String> {
    let s = doc["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == step))
        .unwrap_or_else(|| panic!("no step {step} in {doc}"));
    s["changes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["action"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_plan(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write plan");
    p
}

/// What EC2 holds for the VPC, read straight from moto: CIDR associations,
/// subnets with tags, route table associations and security group rules.
#[derive(Debug, PartialEq)]
pub struct Ec2State {
    pub cidrs: Vec<(String, String)>,
    pub subnets: Vec<SubnetView>,
    pub sg_rules: Vec<String>,
}

#[derive(Debug, PartialEq, Clone)]
pub struct SubnetView {
    pub id: String,
    pub cidr: String,
    pub az: String,
    pub tags: Vec<(String, String)>,
    pub route_table: Option<String>,
}

pub fn ec2_state(sb: &Sandbox) -> Ec2State {
    let ec2 = sb.moto_client().expect("moto runs");
    let vpc_id = sb.world().vpc_id.clone();
    sb.runtime().block_on(async move {
        let vpc_filter = Filter::builder().name("vpc-id").values(&vpc_id).build();
        let vpcs = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.expect("DescribeVpcs");
        let mut cidrs: Vec<(String, String)> = vpcs
            .vpcs()
            .iter()
            .flat_map(|v| v.cidr_block_association_set())
            .map(|a| {
                (
                    a.cidr_block().unwrap_or_default().to_string(),
                    a.cidr_block_state()
                        .and_then(|s| s.state())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        cidrs.sort();
        let rts = ec2
            .describe_route_tables()
            .filters(vpc_filter.clone())
            .send()
            .await
            .expect("DescribeRouteTables");
        let rt_of = |subnet: &str| -> Option<String> {
            rts.route_tables()
                .iter()
                .find(|rt| rt.associations().iter().any(|a| a.subnet_id() == Some(subnet)))
                .and_then(|rt| rt.route_table_id().map(String::from))
        };
        let subs = ec2
            .describe_subnets()
            .filters(vpc_filter.clone())
            .send()
            .await
            .expect("DescribeSubnets");
        let mut subnets: Vec<SubnetView> = subs
            .subnets()
            .iter()
            .map(|s| {
                let id = s.subnet_id().unwrap_or_default().to_string();
                let mut tags: Vec<(String, String)> = s
                    .tags()
                    .iter()
                    .map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()))
                    .collect();
                tags.sort();
                SubnetView {
                    route_table: rt_of(&id),
                    id,
                    cidr: s.cidr_block().unwrap_or_default().into(),
                    az: s.availability_zone().unwrap_or_default().into(),
                    tags,
                }
            })
            .collect();
        subnets.sort_by(|a, b| a.cidr.cmp(&b.cidr));
        let sgs = ec2
            .describe_security_groups()
            .filters(vpc_filter)
            .send()
            .await
            .expect("DescribeSecurityGroups");
        let mut sg_rules = vec![];
        for g in sgs.security_groups() {
            for p in g.ip_permissions() {
                for r in p.ip_ranges() {
                    sg_rules.push(format!(
                        "{} {} {}-{} {} {}",
                        g.group_name().unwrap_or_default(),
                        p.ip_protocol().unwrap_or_default(),
                        p.from_port().unwrap_or(-1),
                        p.to_port().unwrap_or(-1),
                        r.cidr_ip().unwrap_or_default(),
                        r.description().unwrap_or_default()
                    ));
                }
            }
        }
        sg_rules.sort();
        Ec2State {
            cidrs,
            subnets,
            sg_rules,
        }
    })
}

pub fn subnet<'a>(s: &'a Ec2State, cidr: &str) -> &'a SubnetView {
    s.subnets
        .iter()
        .find(|x| x.cidr == cidr)
        .unwrap_or_else(|| panic!("no subnet {cidr} in {:#?}", s.subnets))
}

pub fn tag<'a>(s: &'a SubnetView, key: &str) -> Option<&'a str> {
    s.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn all_mutations(sb: &Sandbox) -> Vec<String> {
    [Service::Ec2, Service::Eks, Service::Kube]
        .into_iter()
        .flat_map(|s| sb.mutating_calls(s))
        .map(|c| format!("{:?} {} {}", c.service, c.action, c.path))
        .collect()
}

/// An independent client's JSON answer: `kubectl … -o json`.
pub fn kubectl_json(sb: &Sandbox, args: &[&str]) -> Value {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let o = sb
        .command(&kubectl)
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("run kubectl");
    assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("kubectl JSON ({e}): {}", text(&o)))
}

/// The AWS CLI from the project venv: `aws … --output json`.
pub fn aws_json(sb: &Sandbox, args: &[&str]) -> Value {
    let venv = sb.venv().expect("the sandbox runs moto from a venv");
    let o = sb
        .command(venv.join("bin/aws"))
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run aws");
    assert!(o.status.success(), "aws {args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("aws JSON ({e}): {}", text(&o)))
}

fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything the "done when" lists, checked with independent
/// clients, plus: nothing created twice, one addon update, no node left
/// cordoned, `podnet verify` passes and `podnet plan` has nothing left to do.
pub fn assert_migrated(sb: &Sandbox, state: &std::path::Path, before: &Ec2State) {
    let seed_subnets = [
        ("ap-northeast-2a", "100.64.1.0/24"),
        ("ap-northeast-2c", "100.64.2.0/24"),
    ];
    assert_migrated_to(sb, state, &repo().join(SEED_PLAN), before, &seed_subnets, 2);
}

/// [`assert_migrated`] for the seed cluster migrated by any plan: its pod
/// subnets per zone and how many ingress rules it adds.
pub fn assert_migrated_to(
    sb: &Sandbox,
    state: &std::path::Path,
    plan: &Path,
    before: &Ec2State,
    pod_subnets: &[(&str, &str)],
    rules: usize,
) {
    let plan = plan.to_path_buf();

    // Pods: every running pod that is not hostNetwork has a 100.64 address,
    // and none is left pending.
    let pods = kubectl_json(sb, &["get", "pods", "-A"]);
    let pods = pods["items"].as_array().expect("pods");
    let mut on_pod_cidr = 0;
    for p in pods {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        let phase = p["status"]["phase"].as_str().unwrap_or("");
        assert_ne!(phase, "Pending", "{name} is still pending: {}", p["status"]);
        if phase != "Running" || p["spec"]["hostNetwork"] == true {
            continue;
        }
        let ip = p["status"]["podIP"].as_str().unwrap_or("");
        assert!(ip.starts_with("100.64."), "{name} runs on {ip}");
        on_pod_cidr += 1;
    }
    assert!(on_pod_cidr >= 100, "only {on_pod_cidr} pods on the pod CIDR");

    // Nodes: on their zone's ENIConfig, schedulable, with custom-networking max pods.
    let nodes = kubectl_json(sb, &["get", "nodes"]);
    let nodes = nodes["items"].as_array().expect("nodes");
    assert!(nodes.len() >= 6, "{} nodes", nodes.len());
    for n in nodes {
        let name = n["metadata"]["name"].as_str().unwrap_or("?");
        let labels = &n["metadata"]["labels"];
        assert_eq!(
            labels["vpc.amazonaws.com/eniConfig"], labels["topology.kubernetes.io/zone"],
            "{name} is not on its zone's ENIConfig: {labels}"
        );
        let want = match labels["node.kubernetes.io/instance-type"].as_str() {
            Some("t3.medium") => "12",
            Some("t3.large") => "24",
            other => panic!("{name}: unexpected instance type {other:?}"),
        };
        assert_eq!(n["status"]["capacity"]["pods"], want, "{name} capacity.pods");
        assert_ne!(n["spec"]["unschedulable"], true, "{name} left cordoned");
    }

    // ENIConfigs: one per AZ, on the pod subnets moto holds.
    let ec2 = ec2_state(sb);
    let eniconfigs = kubectl_json(sb, &["get", "eniconfigs.crd.k8s.amazonaws.com"]);
    let mut got: Vec<(String, String)> = eniconfigs["items"]
        .as_array()
        .expect("eniconfigs")
        .iter()
        .map(|e| {
            (
                e["metadata"]["name"].as_str().unwrap_or("").to_string(),
                e["spec"]["subnet"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String)> = pod_subnets
        .iter()
        .map(|(az, cidr)| (az.to_string(), subnet(&ec2, cidr).id.clone()))
        .collect();
    assert_eq!(got, want);

    // The addon: custom networking merged into the existing configuration.
    let addon = aws_json(
        sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    );
    let values: Value = serde_json::from_str(addon["addon"]["configurationValues"].as_str().expect("values"))
        .expect("configurationValues is JSON");
    for key in [
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
        "ENI_CONFIG_LABEL_DEF",
        "WARM_IP_TARGET",
        "MINIMUM_IP_TARGET",
    ] {
        assert!(values["env"][key].is_string(), "{key} missing from {values}");
    }
    assert_eq!(values["env"]["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "true");
    assert_eq!(values["env"]["ENI_CONFIG_LABEL_DEF"], "topology.kubernetes.io/zone");

    // Karpenter: RESERVED_ENIS=1 on the controller.
    let karpenter = kubectl_json(sb, &["-n", "kube-system", "get", "deployment", "karpenter"]);
    let containers = karpenter["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert!(
        containers
            .iter()
            .any(|c| env_of(c).get("RESERVED_ENIS").map(String::as_str) == Some("1")),
        "RESERVED_ENIS=1 not set: {containers:?}"
    );

    // Nothing created twice: one association, two subnets, two rules.
    let associations: Vec<_> = ec2.cidrs.iter().filter(|(c, _)| c == "100.64.0.0/16").collect();
    assert_eq!(associations.len(), 1, "{:?}", ec2.cidrs);
    let new_subnets: Vec<&str> = ec2
        .subnets
        .iter()
        .filter(|s| !before.subnets.iter().any(|b| b.id == s.id))
        .map(|s| s.cidr.as_str())
        .collect();
    let mut want: Vec<&str> = pod_subnets.iter().map(|(_, c)| *c).collect();
    want.sort();
    let mut new_subnets = new_subnets;
    new_subnets.sort();
    assert_eq!(new_subnets, want);
    let new_rules: Vec<&String> = ec2.sg_rules.iter().filter(|r| !before.sg_rules.contains(r)).collect();
    assert_eq!(new_rules.len(), rules, "{new_rules:#?}");

    // One addon update, however often podnet was killed.
    let updates: Vec<_> = sb
        .mutating_calls(Service::Eks)
        .into_iter()
        .filter(|c| c.action == "UpdateAddon" && c.status < 300)
        .collect();
    assert_eq!(updates.len(), 1, "UpdateAddon calls: {updates:#?}");

    let o = podnet(sb, state, &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
    let o = podnet(sb, state, &plan, &["plan"]);
    assert_eq!(o.status.code(), Some(0), "plan after the migration: {}", text(&o));
}

/// The policy `podnet iam-policy --for <command>` prints for the sandbox's
/// account and VPC.
pub fn printed_policy(sb: &Sandbox, state: &Path, plan: &Path, command: &str) -> Value {
    let o = podnet(
        sb,
        state,
        plan,
        &[
            "iam-policy",
            "--for",
            command,
            "--account",
            podnet_sandbox::scenario::seed::ACCOUNT,
            "--vpc-id",
            &sb.world().vpc_id,
            "--output",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("the policy is JSON")
}

/// Holds the sandbox's principal to exactly that policy from now on.
pub fn enforce_printed_policy(sb: &Sandbox, state: &Path, plan: &Path, command: &str) -> Value {
    let policy = printed_policy(sb, state, plan, command);
    sb.set_iam_policy(&policy)
        .expect("the printed policy is a valid IAM document");
    policy
}

/// Every call the sandbox refused for want of a permission.
pub fn denied_calls(sb: &Sandbox) -> Vec<String> {
    sb.calls()
        .into_iter()
        .filter(|c| c.status == 403 && !c.injected)
        .map(|c| format!("{:?} {}", c.service, c.action))
        .collect()
}

/// The seed cluster with room in its node subnets for the nodes the
/// migration added, for tests that roll back: the seed's own subnets are
/// nearly full (about 15 free addresses each), and after the apply
/// Karpenter runs twice the nodes (custom networking gives each fewer
/// pods), each of which takes a primary address and a warm pool from the
/// node subnets once it is back on them.
pub fn seed_with_room() -> Scenario {
    let mut s = Scenario::seed();
    for z in &mut s.zones {
        z.other_tenant_ips = 60;
    }
    s
}

/// The decoded user data of every version of a launch template, oldest
/// first, read with the AWS CLI.
pub fn template_versions(sb: &Sandbox, id: &str) -> Vec<String> {
    use base64::Engine as _;
    let vs = aws_json(
        sb,
        &["ec2", "describe-launch-template-versions", "--launch-template-id", id],
    );
    let mut vs: Vec<Value> = vs["LaunchTemplateVersions"].as_array().cloned().unwrap_or_default();
    vs.sort_by_key(|v| v["VersionNumber"].as_i64());
    vs.iter()
        .map(|v| {
            let b = v["LaunchTemplateData"]["UserData"].as_str().unwrap_or("");
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).expect("base64")).expect("utf-8")
        })
        .collect()
}

/// The lines of `new` not in `old`, and of `old` not in `new`.
pub fn line_diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
    let o: Vec<&str> = old.lines().collect();
    let n: Vec<&str> = new.lines().collect();
    (
        n.iter().filter(|l| !o.contains(l)).map(|l| l.to_string()).collect(),
        o.iter().filter(|l| !n.contains(l)).map(|l| l.to_string()).collect(),
    )
}
