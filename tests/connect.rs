//! How podnet reaches the cluster, judged from the sandbox's call log and
//! with kubectl: a kubeconfig that points at another cluster is refused
//! before any change; the seed migration runs with no kubeconfig at all
//! (DescribeCluster's endpoint and CA, podnet's own EKS token) while tokens
//! expire every few seconds; again through the kubeconfig `aws eks
//! update-kubeconfig` writes (its `aws eks get-token` exec plugin); and no
//! credential reaches the journal, the plan, or any output at `-vv`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use podnet_sandbox::auth::{AccessPolicy, DEFAULT_TOKEN_LIFETIME, Principal};
use podnet_sandbox::{Sandbox, Scenario, Service};

#[test]
fn a_kubeconfig_for_another_cluster_in_the_same_region_is_refused_before_any_change() {
    // Same scenario twice: same region, same cluster name, same AZ names.
    let a = start(Scenario::seed());
    let b = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let other = b.kubeconfig_path().display().to_string();
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let o = podnet_with_env(&a, dir.path(), &plan, args, &[("KUBECONFIG", &other)]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(a.kube_url()), "{args:?} names this cluster's endpoint: {t}");
        assert!(t.contains(b.kube_url()), "{args:?} names the kubeconfig's server: {t}");
    }
    // The same through --kubeconfig.
    let o = podnet(&a, dir.path(), &plan, &["--kubeconfig", &other, "plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for sb in [&a, &b] {
        let mutating: Vec<_> = sb.calls().into_iter().filter(|c| c.mutating).collect();
        assert!(mutating.is_empty(), "mutating calls: {mutating:#?}");
    }
    let kube_calls_on_b: Vec<_> = b.calls().into_iter().filter(|c| c.service == Service::Kube).collect();
    assert!(
        kube_calls_on_b.is_empty(),
        "podnet talked to the other cluster: {kube_calls_on_b:#?}"
    );
}

/// Every 401 the API server sent was followed by the same request
/// succeeding: podnet re-signed its token and sent it again.
fn assert_every_401_recovered(sb: &Sandbox) -> usize {
    let kube: Vec<_> = sb.calls().into_iter().filter(|c| c.service == Service::Kube).collect();
    let mut refused = 0;
    for (i, c) in kube.iter().enumerate().filter(|(_, c)| c.status == 401) {
        refused += 1;
        assert!(
            kube[i + 1..]
                .iter()
                .any(|later| later.path == c.path && later.status != 401),
            "a 401 podnet did not recover from: {c:#?}"
        );
    }
    refused
}

/// Every file under `dir` (recursively), as text.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), String::from_utf8_lossy(&bytes).to_string()));
        }
    }
    out
}

#[test]
fn the_seed_migration_with_podnet_s_own_token_expiring_every_few_seconds_and_no_credential_leaked() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    // A principal with recognisable credentials, so a leak can be found.
    const KEY: &str = "AKIAPODNETLEAKCHECK7";
    const SECRET: &str = "podnet+leak/check=secret0123456789abcd";
    const SESSION: &str = "podnet-leak-check-session-token-FwoGZXIvYXdzE";
    sb.auth().put_principal(Principal {
        arn: "arn:aws:iam::123456789012:user/podnet-operator".into(),
        access_key_id: KEY.into(),
        secret_access_key: SECRET.into(),
        access_policy: Some(AccessPolicy::ClusterAdmin),
    });
    sb.auth().set_token_lifetime(Duration::from_secs(3));
    let o = podnet_command(&sb, dir.path(), &plan, &["-vv", "apply", "--auto-approve"])
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", SESSION)
        .output()
        .expect("run podnet");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", &t[t.len().saturating_sub(6000)..]);
    let refused = assert_every_401_recovered(&sb);
    assert!(refused > 0, "tokens of 3 s should have expired during a whole apply");
    // podnet's calls were authenticated as the operator, not as the
    // kubeconfig's static admin: no kubeconfig was read.
    let admin_token = sb.admin_token().to_string();

    let mut haystacks = vec![("podnet output".to_string(), t.clone())];
    haystacks.extend(files_under(dir.path()));
    for (name, text) in &haystacks {
        for secret in [KEY, SECRET, SESSION, "k8s-aws-v1.", admin_token.as_str()] {
            assert!(!text.contains(secret), "{secret} leaked into {name}");
        }
    }

    sb.auth().set_token_lifetime(DEFAULT_TOKEN_LIFETIME);
    assert_migrated(&sb, dir.path(), &before);
}

#[test]
fn the_seed_migration_through_the_kubeconfig_aws_eks_update_kubeconfig_writes() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    let venv_bin = sb.venv().expect("moto venv").join("bin");
    let kubeconfig = dir.path().join("eks-kubeconfig");
    let o = sb
        .command(venv_bin.join("aws"))
        .args(["eks", "update-kubeconfig", "--name", "podnet-demo", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("aws eks update-kubeconfig");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    assert!(written.contains("certificate-authority-data"), "{written}");
    assert!(written.contains("get-token"), "{written}");
    let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());

    // kubectl works with it (its exec plugin runs `aws eks get-token`).
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let k = sb
        .command(&kubectl)
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", &path)
        .args(["get", "nodes", "-o", "name"])
        .output()
        .expect("kubectl");
    assert!(k.status.success(), "kubectl: {}", String::from_utf8_lossy(&k.stderr));
    assert!(String::from_utf8_lossy(&k.stdout).contains("node/ip-10-255-"));

    let o = podnet_command(&sb, dir.path(), &plan, &["apply", "--auto-approve"])
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", &path)
        .output()
        .expect("run podnet");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let kube = sb.calls().into_iter().filter(|c| c.service == Service::Kube);
    assert!(kube.clone().count() > 50);
    assert!(kube.filter(|c| c.status == 401).count() == 0);
    assert_migrated(&sb, dir.path(), &before);
}

#[test]
fn a_read_only_principal_gets_the_missing_permissions_as_preflight_errors_and_changes_nothing() {
    use podnet_sandbox::auth::{READONLY_ACCESS_KEY_ID, READONLY_SECRET_ACCESS_KEY};
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let run = |args: &[&str]| {
        podnet_command(&sb, dir.path(), &plan, args)
            .env_remove("KUBECONFIG")
            .env("AWS_ACCESS_KEY_ID", READONLY_ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", READONLY_SECRET_ACCESS_KEY)
            .output()
            .expect("run podnet")
    };
    let o = run(&["plan"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("arn:aws:iam::123456789012:user/podnet-readonly"),
        "names the principal: {t}"
    );
    for missing in [
        "may not patch nodes",
        "may not create pods/eviction",
        "may not patch eniconfigs.crd.k8s.amazonaws.com",
        "may not patch deployments.apps",
        "may not delete nodeclaims.karpenter.sh",
    ] {
        assert!(t.contains(missing), "{missing} not listed: {t}");
    }
    assert!(!t.contains("may not list"), "reads are allowed to a viewer: {t}");

    let o = run(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let mutating: Vec<_> = sb.calls().into_iter().filter(|c| c.mutating).collect();
    assert!(
        mutating.is_empty(),
        "a read-only principal's apply changed something: {mutating:#?}"
    );
    // The cluster refused nothing podnet tried: it asked first.
    let refused: Vec<_> = sb
        .calls()
        .into_iter()
        .filter(|c| c.service == Service::Kube && c.status == 403)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

#[test]
fn a_principal_without_an_access_entry_is_named_with_the_commands_that_grant_access() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    sb.auth().put_principal(Principal {
        arn: "arn:aws:iam::123456789012:user/new-hire".into(),
        access_key_id: "AKIAPODNETNEWHIRE001".into(),
        secret_access_key: "podnet-new-hire-secret".into(),
        access_policy: None,
    });
    let o = podnet_command(&sb, dir.path(), &plan, &["apply", "--auto-approve"])
        .env_remove("KUBECONFIG")
        .env("AWS_ACCESS_KEY_ID", "AKIAPODNETNEWHIRE001")
        .env("AWS_SECRET_ACCESS_KEY", "podnet-new-hire-secret")
        .output()
        .expect("run podnet");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("does not accept arn:aws:iam::123456789012:user/new-hire"),
        "{t}"
    );
    assert!(
        t.contains("aws eks create-access-entry --cluster-name podnet-demo"),
        "{t}"
    );
    assert!(
        !t.contains("podnet resume"),
        "nothing was saved, nothing to resume: {t}"
    );
    let mutating: Vec<_> = sb.calls().into_iter().filter(|c| c.mutating).collect();
    assert!(mutating.is_empty(), "{mutating:#?}");
    // The principal was named by STS, once the cluster said 401.
    assert!(
        sb.calls()
            .iter()
            .any(|c| c.service == Service::Sts && c.action == "GetCallerIdentity")
    );
}

/// GET `path` on the sandbox's API server with `token`, returning the status.
fn status_with_token(sb: &Sandbox, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = sb.kube_url().trim_start_matches("https://");
    let mut s = podnet_sandbox::auth::tls::blocking_stream(addr, sb.kube_ca_pem()).expect("TLS");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_sandbox_accepts_podnet_s_token_only_for_its_own_cluster_and_only_while_fresh() {
    let sb = Sandbox::start_async(podnet_sandbox::SandboxOptions {
        moto: false,
        controllers: false,
        ..Default::default()
    })
    .await
    .expect("sandbox");
    let cfg = aws_config::SdkConfig::builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("testing", "testing", None, None, "test"),
        ))
        .build();
    let mint = |cluster: &str| podnet::aws::EksTokenSigner::new(&cfg, "ap-northeast-2", cluster).expect("signer");
    let good = mint("podnet-demo").token().await.expect("token");
    let other = mint("podnet-staging").token().await.expect("token");
    let nodes = "/api/v1/nodes?limit=1";
    assert_eq!(status_with_token(&sb, nodes, &good), 200);
    assert_eq!(
        status_with_token(&sb, nodes, &other),
        401,
        "a token for another cluster"
    );
    assert_eq!(status_with_token(&sb, nodes, "podnet-sandbox"), 401);
    // X-Amz-Date has whole seconds: a lifetime of a few seconds leaves a
    // fresh token room on a loaded machine.
    sb.auth().set_token_lifetime(Duration::from_secs(4));
    tokio::time::sleep(Duration::from_millis(5100)).await;
    assert_eq!(status_with_token(&sb, nodes, &good), 401, "an expired token");
    let fresh = mint("podnet-demo").token().await.expect("token");
    assert_eq!(status_with_token(&sb, nodes, &fresh), 200);
}
