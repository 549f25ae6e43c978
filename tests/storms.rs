//! The seed migration under the faults real clusters produce every day,
//! completed by one `podnet apply` without a resume: a share of every EC2
//! and EKS call throttled or failed with a 5xx, a share of Kubernetes calls
//! answered 429 (with `Retry-After`) or 503, all seeded so a failure
//! replays. The faults are cleared before the end state is read with
//! kubectl and the AWS CLI, which retry nothing here.

mod common;

use common::*;
use podnet_sandbox::{Fault, Scenario, Service};

#[test]
fn the_seed_migration_completes_through_throttling_and_server_errors() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    for f in [
        Fault::at_rate(Service::Ec2, "*", 0.2, 1, 503, "RequestLimitExceeded"),
        Fault::at_rate(Service::Ec2, "*", 0.1, 2, 500, "InternalError"),
        Fault::at_rate(Service::Eks, "*", 0.2, 3, 400, "ThrottlingException"),
        Fault::at_rate(Service::Eks, "*", 0.1, 4, 503, "ServiceUnavailableException"),
        Fault::at_rate(Service::Kube, "*", 0.05, 5, 429, "TooManyRequests"),
        Fault::at_rate(Service::Kube, "*", 0.05, 6, 503, "ServiceUnavailable"),
    ] {
        sb.inject_fault(f);
    }
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    let injected = |s: Service| sb.calls().iter().filter(|c| c.service == s && c.injected).count();
    let (ec2, eks, kube) = (injected(Service::Ec2), injected(Service::Eks), injected(Service::Kube));
    sb.clear_faults();
    assert_eq!(o.status.code(), Some(0), "one apply, no resume: {}", text(&o));
    eprintln!("faults injected: {ec2} EC2, {eks} EKS, {kube} Kubernetes");
    // EKS sees a dozen calls, so its share may be small; the storm as a whole is not.
    assert!(
        ec2 + eks + kube >= 20,
        "the storm hit: {ec2} EC2, {eks} EKS, {kube} Kubernetes"
    );
    assert_migrated(&sb, dir.path(), &before);
}
