//! AWS access: the SDK configuration (the standard credential and endpoint
//! chain: environment, profiles, SSO, IMDS, IRSA, `AWS_ENDPOINT_URL_*`) and
//! the EC2/EKS reads and writes podnet makes, each behind a narrow function
//! so commands and steps never touch SDK types directly.

pub mod instance_types;

use aws_config::{BehaviorVersion, Region, SdkConfig};

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
