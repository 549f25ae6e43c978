//! The EKS bearer token, minted the way `aws eks get-token` and
//! aws-iam-authenticator mint it: `k8s-aws-v1.` followed by the unpadded
//! base64url of a presigned STS `GetCallerIdentity` URL whose SigV4
//! signature covers the `x-k8s-aws-id: <cluster>` header, signed with the
//! same credential chain podnet uses for EC2 and EKS (no AWS CLI needed).
//! The URL is never fetched by podnet: the cluster's authenticator sends it
//! to STS, which proves who signed it.
//!
//! A token is valid for 15 minutes after it is signed (the authenticator's
//! `presignedURLExpiration`); callers re-sign well before that (signing is
//! local and cheap) and once more after a 401.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// What the presigned URL's `X-Amz-Expires` says; the authenticator ignores
/// it for validity (15 minutes from `X-Amz-Date`) but requires it.
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// Why a token could not be minted. Never carries the credentials.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no AWS credentials are configured (the same chain as for EC2 and EKS: environment, profile, SSO, IMDS)")]
    NoProvider,
    #[error("loading AWS credentials to sign the EKS token: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("signing the EKS token: {0}")]
    Sign(String),
}

/// Signs EKS tokens for one cluster.
#[derive(Clone)]
pub struct EksTokenSigner {
    credentials: SharedCredentialsProvider,
    region: String,
    cluster: String,
}

impl std::fmt::Debug for EksTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksTokenSigner")
            .field("region", &self.region)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// The regional STS host the token names (what the authenticator
/// allow-lists; `aws eks get-token` uses the same).
pub fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

impl EksTokenSigner {
    pub fn new(cfg: &SdkConfig, region: &str, cluster: &str) -> Result<EksTokenSigner, TokenError> {
        Ok(EksTokenSigner {
            credentials: cfg.credentials_provider().ok_or(TokenError::NoProvider)?,
            region: region.to_string(),
            cluster: cluster.to_string(),
        })
    }

    /// A token signed now.
    pub async fn token(&self) -> Result<String, TokenError> {
        let creds = self
            .credentials
            .provide_credentials()
            .await
            .map_err(TokenError::Credentials)?;
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(PRESIGN_EXPIRES);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sts")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        let host = sts_host(&self.region);
        let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
        let headers = [("host", host.as_str()), ("x-k8s-aws-id", self.cluster.as_str())];
        let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params.into())
            .map_err(|e| TokenError::Sign(e.to_string()))?
            .into_parts();
        let mut req = http::Request::builder()
            .method("GET")
            .uri(&url)
            .body(())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut req);
        let signed = req.uri().to_string();
        Ok(format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed.as_bytes())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[tokio::test]
    async fn a_token_is_a_presigned_get_caller_identity_that_signs_the_cluster() {
        let cfg = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDPODNETTEST",
                "podnet-test-secret",
                None,
                None,
                "test",
            )))
            .build();
        let signer = EksTokenSigner::new(&cfg, "ap-northeast-2", "podnet-demo").unwrap();
        let token = signer.token().await.unwrap();
        let b64 = token.strip_prefix(TOKEN_PREFIX).unwrap();
        assert!(!b64.contains('='), "unpadded");
        let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap();
        assert!(url.starts_with("https://sts.ap-northeast-2.amazonaws.com/?"), "{url}");
        assert!(url.contains("Action=GetCallerIdentity"));
        assert!(url.contains("X-Amz-Expires=60"));
        assert!(url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"), "{url}");
        assert!(!url.contains("podnet-demo"), "the cluster is signed, never in the URL");
        assert!(!url.contains("podnet-test-secret"));
        assert!(!format!("{signer:?}").contains("podnet-test-secret"));
    }
}
