//! The control plane's reach, as kubectl and boto3 see it: a CIDR block
//! associated after the cluster existed is not reached by the API server
//! until it is recognised, so a `failurePolicy: Fail` webhook served from it
//! refuses pod creation with the API server's error, an aggregated API
//! served from it goes `Available=False` (`FailedDiscoveryCheck`) and
//! discovery reports it, and the API server's proxy times out — until the
//! recognition delay passes.

mod common;

use std::time::Duration;

use podnet_sandbox::{Sandbox, SandboxOptions, Scenario};
use serde_json::Value;

/// The seed (which serves metrics-server's APIService and an
/// aws-load-balancer-controller-shaped pod mutator).
fn start() -> Sandbox {
    Sandbox::start(SandboxOptions::default().with_scenario(Scenario::seed())).expect("sandbox starts")
}

fn available(sb: &Sandbox) -> String {
    let run = common::kubectl(
        sb,
        &[
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}/{.status.conditions[?(@.type==\"Available\")].reason}",
        ],
    );
    assert!(run.ok, "{}", run.stderr);
    run.stdout.trim().to_string()
}

fn run_pod(sb: &Sandbox, ns: &str, name: &str) -> common::Run {
    common::kubectl(
        sb,
        &[
            "run",
            name,
            "-n",
            ns,
            "--image=public.ecr.aws/docker/library/busybox:1.36",
            "--restart=Never",
        ],
    )
}

fn metrics_pod(sb: &Sandbox) -> String {
    let run = common::kubectl(
        sb,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "app=metrics-server",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    assert!(run.ok, "{}", run.stderr);
    run.stdout.trim().to_string()
}

#[test]
fn an_unrecognised_block_takes_webhooks_and_aggregated_apis_down_until_recognised() {
    let sb = start();
    common::wait_until("metrics.k8s.io available", || available(&sb) == "True/Passed");
    let run = common::kubectl(&sb, &["get", "mutatingwebhookconfigurations"]);
    assert!(
        run.ok && run.stdout.contains("aws-load-balancer-webhook"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let before = run_pod(&sb, "default", "before");
    assert!(before.ok, "{}", before.stderr);

    // As if the whole VPC block had been associated a moment ago.
    sb.control_plane().associated("10.255.0.0/16".parse().unwrap());

    let refused = run_pod(&sb, "default", "during");
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("Internal error occurred: failed calling webhook \"mpod.elbv2.k8s.aws\": failed to call webhook: Post \"https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-v1-pod?timeout=10s\": context deadline exceeded"),
        "{}",
        refused.stderr
    );
    let excluded = run_pod(&sb, "kube-system", "excluded");
    assert!(excluded.ok, "the webhook leaves kube-system alone: {}", excluded.stderr);

    common::wait_until("metrics.k8s.io unavailable", || {
        available(&sb) == "False/FailedDiscoveryCheck"
    });
    let raw = common::kubectl(&sb, &["get", "--raw", "/apis/metrics.k8s.io/v1beta1"]);
    assert!(!raw.ok && raw.stderr.contains("ServiceUnavailable"), "{}", raw.stderr);
    let agg = common::http(
        &sb,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )],
        None,
    )
    .json();
    let metrics = agg["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == "metrics.k8s.io"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(metrics["versions"][0]["freshness"], "Stale", "{metrics}");
    let pod = metrics_pod(&sb);
    let proxied = common::kubectl(
        &sb,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/kube-system/pods/{pod}:10250/proxy/"),
        ],
    );
    assert!(
        !proxied.ok && proxied.stderr.contains("i/o timeout"),
        "{}",
        proxied.stderr
    );

    let log = sb.control_plane().unreachable();
    assert!(
        log.iter()
            .any(|u| u.kind == "webhook" && u.refused && u.name == "mpod.elbv2.k8s.aws"),
        "{log:?}"
    );
    assert!(log.iter().any(|u| u.kind == "apiservice"), "{log:?}");

    sb.set_cidr_recognition(Duration::ZERO);
    let after = run_pod(&sb, "default", "after");
    assert!(after.ok, "{}", after.stderr);
    common::wait_until("metrics.k8s.io available again", || available(&sb) == "True/Passed");
    let raw = common::kubectl(&sb, &["get", "--raw", "/apis/metrics.k8s.io/v1beta1"]);
    assert!(raw.ok, "{}", raw.stderr);
    let v: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(v["resources"][0]["kind"], "NodeMetrics", "{v}");
    let proxied = common::kubectl(
        &sb,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/kube-system/pods/{pod}:10250/proxy/"),
        ],
    );
    assert!(proxied.ok && proxied.stdout.trim() == "ok", "{}", proxied.stderr);
}

/// `AssociateVpcCidrBlock` through the EC2 endpoint (boto3 here) starts the
/// recognition clock for that block; the original block stays reachable.
#[test]
fn a_block_associated_through_ec2_waits_for_recognition() {
    let sb = common::sandbox();
    let vpc = sb.world().vpc_id.clone();
    let script = format!(
        r#"
import boto3
boto3.client("ec2").associate_vpc_cidr_block(VpcId="{vpc}", CidrBlock="100.64.0.0/16")
"#
    );
    let run = common::python(&sb, &script);
    assert!(run.ok, "{}", run.stderr);
    let pending = sb.control_plane().pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].0.to_string(), "100.64.0.0/16");
    assert!(
        pending[0].1 > Duration::from_secs(3600),
        "the seed's default is two hours"
    );
    let cp = sb.control_plane();
    assert!(!cp.reaches("100.64.1.1".parse().unwrap()));
    assert!(cp.reaches("10.255.11.20".parse().unwrap()));
    sb.set_cidr_recognition(Duration::ZERO);
    assert!(cp.reaches("100.64.1.1".parse().unwrap()));
}
