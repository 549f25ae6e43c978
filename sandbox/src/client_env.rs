//! What a client of the sandbox is handed: the kubeconfig (cluster CA and
//! static admin token, as `aws eks update-kubeconfig` would write it), AWS
//! config and credentials files, and the environment pointing the AWS SDKs
//! and CLI at the sandbox through the service-specific endpoint variables
//! (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html>),
//! with the variables that could let a developer's own AWS session in
//! unset.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::startup::Started;
use crate::{SandboxError, Scenario, io_err};

pub(crate) fn write_atomic(path: &Path, contents: &str) -> Result<(), SandboxError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(format!("writing {}", tmp.display())))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming {} to {}", tmp.display(), path.display())))
}

/// The sandbox's kubeconfig: the cluster CA (as `aws eks update-kubeconfig`
/// writes it) and the static admin token.
fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: podnet-sandbox\n    namespace: default\ncurrent-context: {cluster}\npreferences: {{}}\nusers:\n- name: podnet-sandbox\n  user:\n    token: {token}\n"
    )
}

/// Variables the env file unsets so a developer's own AWS session cannot
/// leak into the sandbox.
pub const UNSET_VARS: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
];

pub(crate) fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c)) && !s.is_empty() {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Write the kubeconfig and AWS files into `state_dir`; returns the
/// kubeconfig's path and the client environment.
pub(crate) fn write_client_files(
    state_dir: &Path,
    s: &Scenario,
    started: &Started,
) -> Result<(PathBuf, Vec<(String, String)>), SandboxError> {
    let kubeconfig_path = state_dir.join("kubeconfig");
    write_atomic(
        &kubeconfig_path,
        &kubeconfig(
            &s.cluster,
            &started.kube_url,
            &started.tls.ca_pem,
            started.auth.static_token(),
        ),
    )?;
    let aws_config = state_dir.join("aws").join("config");
    write_atomic(
        &aws_config,
        &format!(
            "[default]\nregion = {}\noutput = json\nmax_attempts = 1\nretry_mode = standard\n",
            s.region
        ),
    )?;
    let aws_creds = state_dir.join("aws").join("credentials");
    write_atomic(
        &aws_creds,
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )?;
    let p = |x: &Path| x.display().to_string();
    let mut env = vec![
        ("AWS_ENDPOINT_URL_EC2".to_string(), started.ec2_url.clone()),
        ("AWS_ENDPOINT_URL_EKS".to_string(), started.eks_url.clone()),
        ("AWS_ENDPOINT_URL_STS".to_string(), started.sts_url.clone()),
        // IAM's SimulatePrincipalPolicy is served on the STS port.
        ("AWS_ENDPOINT_URL_IAM".to_string(), started.sts_url.clone()),
        // moto's S3 through the audit proxy (path-style requests).
        (
            "AWS_ENDPOINT_URL_S3".to_string(),
            started.s3_url.clone().unwrap_or_default(),
        ),
        // The sandbox's Auto Scaling ("Auto Scaling" is the service id the
        // SDKs turn into AUTO_SCALING).
        (
            "AWS_ENDPOINT_URL_AUTO_SCALING".to_string(),
            started.autoscaling_url.clone(),
        ),
        ("AWS_REGION".to_string(), s.region.clone()),
        ("AWS_DEFAULT_REGION".to_string(), s.region.clone()),
        ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
        ("AWS_CONFIG_FILE".to_string(), p(&aws_config)),
        ("AWS_SHARED_CREDENTIALS_FILE".to_string(), p(&aws_creds)),
        ("AWS_MAX_ATTEMPTS".to_string(), "1".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ("AWS_PAGER".to_string(), String::new()),
        ("KUBECONFIG".to_string(), p(&kubeconfig_path)),
        ("PODNET_SANDBOX_CLUSTER".to_string(), s.cluster.clone()),
        (
            "PODNET_SANDBOX_CONTROL".to_string(),
            format!("{}/_sandbox", started.eks_url),
        ),
    ];
    if started.moto_url.is_none() {
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_EC2" && k != "AWS_ENDPOINT_URL_S3");
    }
    Ok((kubeconfig_path, env))
}
