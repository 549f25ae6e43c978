//! The seed migration under the faults real clusters produce every day,
//! completed by one `podnet apply` without a resume: a share of every EC2
//! and EKS call throttled or failed with a 5xx, a share of Kubernetes calls
//! answered 429 (with `Retry-After`) or 503, all seeded so a failure
//! replays, and EC2 eventually consistent (a new subnet missing and refused
//! by id, a new CIDR association `associating`, for 30 simulated seconds),
//! and every Kubernetes write raced by a concurrent writer's update of the
//! same object; `-q` keeps stderr empty throughout. The faults are cleared before the end state is read with
//! kubectl and the AWS CLI, which retry nothing here.

mod common;

use common::*;
use std::time::Duration;

use podnet_sandbox::{Fault, Scenario, Service};

#[test]
fn the_seed_migration_completes_through_throttling_and_server_errors() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    // A subnet or CIDR association made a moment ago is not visible yet.
    sb.set_ec2_lag(Some(Duration::from_secs(30)));
    for f in [
        Fault::at_rate(Service::Ec2, "*", 0.2, 1, 503, "RequestLimitExceeded"),
        Fault::at_rate(Service::Ec2, "*", 0.1, 2, 500, "InternalError"),
        Fault::at_rate(Service::Eks, "*", 0.2, 3, 400, "ThrottlingException"),
        Fault::at_rate(Service::Eks, "*", 0.1, 4, 503, "ServiceUnavailableException"),
        Fault::at_rate(Service::Kube, "*", 0.05, 5, 429, "TooManyRequests"),
        Fault::at_rate(Service::Kube, "*", 0.05, 6, 503, "ServiceUnavailable"),
        // Every Kubernetes write podnet makes, raced once by another writer.
        Fault::race("*", 10_000),
    ] {
        sb.inject_fault(f);
    }
    let o = podnet(&sb, dir.path(), &plan, &["-q", "apply", "--auto-approve"]);
    let injected = |s: Service| sb.calls().iter().filter(|c| c.service == s && c.injected).count();
    let (ec2, eks, kube) = (injected(Service::Ec2), injected(Service::Eks), injected(Service::Kube));
    sb.clear_faults();
    sb.set_ec2_lag(None);
    assert_eq!(o.status.code(), Some(0), "one apply, no resume: {}", text(&o));
    // Quiet: results on stdout, and not one line on stderr — no retry news,
    // no dependency's logger (kube-rs, hyper, the SDK) without -v.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.trim().is_empty(), "-q apply wrote to stderr: {stderr}");
    eprintln!("faults injected: {ec2} EC2, {eks} EKS, {kube} Kubernetes");
    // EKS sees a dozen calls, so its share may be small; the storm as a whole is not.
    assert!(
        ec2 + eks + kube >= 20,
        "the storm hit: {ec2} EC2, {eks} EKS, {kube} Kubernetes"
    );
    // Retries never doubled a write: one node group, so one version update
    // and one new launch template version (assert_migrated counts the
    // association, subnets, rules and add-on update).
    let succeeded = |s: Service, action: &str| {
        sb.calls()
            .iter()
            .filter(|c| c.service == s && c.action == action && !c.injected && c.status < 300)
            .count()
    };
    // EC2's lag was met (the route table association right after its
    // subnet was refused, then retried) and so were the races.
    let calls = sb.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.action == "AssociateRouteTable" && c.status == 400 && !c.injected),
        "no call met a subnet that had not propagated"
    );
    let karpenter = kubectl_json(&sb, &["-n", "kube-system", "get", "deployment", "karpenter"]);
    assert!(
        karpenter["metadata"]["annotations"]["podnet-sandbox/raced"].is_string(),
        "podnet's write to the Karpenter controller was not raced: {}",
        karpenter["metadata"]
    );
    assert_eq!(succeeded(Service::Eks, "UpdateNodegroupVersion"), 1);
    assert_eq!(succeeded(Service::Ec2, "CreateLaunchTemplateVersion"), 1);
    assert_migrated(&sb, dir.path(), &before);
}
