//! AWS access: the SDK configuration (the standard credential and endpoint
//! chain: environment, profiles, SSO, IMDS, IRSA, `AWS_ENDPOINT_URL_*`), the
//! narrow [`Ec2Api`], [`EksApi`] and [`AutoScalingApi`] traits steps are written against (and
//! [`access::AccessApi`], who the credentials are and what IAM lets them do), the
//! retry policy set on their clients, and the classification of AWS errors.

pub mod access;
pub mod actions;
pub mod addon_config;
pub mod autoscaling;
pub mod ec2;
pub mod eks;
pub mod eks_token;
pub mod error;
pub mod instance_types;
pub mod retry;
pub mod s3;

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use autoscaling::{AutoScalingApi, SdkAutoScaling};
pub use ec2::{Ec2Api, SdkEc2};
pub use eks::{EksApi, SdkEks};
pub use eks_token::EksTokenSigner;
pub use error::AwsError;

/// Where podnet talks to AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsTarget {
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// Loads the SDK configuration through the default provider chain.
pub async fn sdk_config(target: &AwsTarget) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &target.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}

/// The ARN of the principal these credentials belong to
/// (`sts:GetCallerIdentity`), for errors that must name it.
pub async fn caller_identity(cfg: &SdkConfig) -> Result<String, AwsError> {
    let out = aws_sdk_sts::Client::new(cfg)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| error::from_sdk("sts", "GetCallerIdentity", None, e))?;
    Ok(out.arn().unwrap_or("an unknown principal").to_string())
}

/// The EC2 and EKS clients of one region, and STS/IAM for the caller.
#[derive(Clone)]
pub struct AwsClients {
    pub ec2: Arc<dyn Ec2Api>,
    pub eks: Arc<dyn EksApi>,
    pub access: Arc<dyn access::AccessApi>,
    /// Self-managed node groups' Auto Scaling groups.
    pub autoscaling: Arc<dyn AutoScalingApi>,
}

impl AwsClients {
    pub async fn connect(target: &AwsTarget) -> AwsClients {
        Self::from_config(&sdk_config(target).await)
    }

    pub fn from_config(cfg: &SdkConfig) -> AwsClients {
        AwsClients {
            ec2: Arc::new(SdkEc2::new(retry::ec2_client(cfg))),
            eks: Arc::new(SdkEks::new(retry::eks_client(cfg))),
            access: Arc::new(access::SdkAccess::new(cfg)),
            autoscaling: Arc::new(SdkAutoScaling::new(retry::autoscaling_client(cfg))),
        }
    }
}
