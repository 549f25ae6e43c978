//! The one retry policy for podnet's EC2, EKS and Auto Scaling calls, set on the SDK
//! clients on purpose rather than inherited from whatever the user's AWS
//! config says (a profile with `max_attempts = 1`, as the sandbox's, would
//! otherwise end a migration on the first throttled `DescribeVpcs`).
//!
//! - Standard mode with 25 attempts, as Terraform's AWS provider retries by
//!   default: exponential backoff with full jitter from 200 ms, capped at
//!   20 s, for throttling (`RequestLimitExceeded`, `ThrottlingException`,
//!   `TooManyRequestsException`), 5xx and transient connection errors. The
//!   SDK never retries a 4xx that is not throttling, so a refused write is
//!   reported at once.
//!   <https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>
//! - A time bound: one attempt may take 60 s, one operation with all its
//!   retries 10 minutes, so a dead endpoint ends in an error, not a hang.
//!   <https://docs.aws.amazon.com/sdk-for-rust/latest/dg/timeouts.html>
//! - A retry quota of its own per service: the SDK's default bucket (500
//!   tokens, 5 per retry, shared process-wide) is a circuit breaker sized
//!   for request-serving fleets and runs dry in a long throttling storm; a
//!   migration that must not stop halfway gets a larger bucket that refills
//!   with time, still a breaker against a region that is really down.
//!
//! A write the SDK retried after a 5xx may have taken effect the first time:
//! the steps pass `ClientToken` where EC2 takes one, and otherwise recognise
//! what an earlier attempt made (a subnet by VPC, zone and CIDR; a rule by
//! its permission) before creating anything.

use std::time::Duration;

use aws_sdk_ec2::config::retry::{RetryConfig, RetryPartition, TokenBucket};
use aws_sdk_ec2::config::timeout::TimeoutConfig;

/// Attempts per call, the first included (Terraform's `max_retries` is 25).
pub const MAX_ATTEMPTS: u32 = 25;
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);
/// Retry tokens per service (the SDK's default is 500) and their refill.
const QUOTA: usize = 5_000;
const QUOTA_REFILL_PER_SECOND: f32 = 10.0;

/// Standard mode, 25 attempts, jittered backoff 200 ms … 20 s.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// 60 s per attempt, 10 minutes per operation with its retries.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// podnet's own retry quota for one service's client.
pub fn partition(service: &'static str) -> RetryPartition {
    let bucket = TokenBucket::builder()
        .capacity(QUOTA)
        .refill_rate(QUOTA_REFILL_PER_SECOND)
        .build();
    RetryPartition::custom(format!("podnet-{service}"))
        .token_bucket(bucket)
        .build()
}

/// The EC2 client, with podnet's retry policy over `cfg`'s.
pub fn ec2_client(cfg: &aws_config::SdkConfig) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::config::Builder::from(cfg)
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .retry_partition(partition("ec2"))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// The EKS client, with podnet's retry policy over `cfg`'s.
pub fn eks_client(cfg: &aws_config::SdkConfig) -> aws_sdk_eks::Client {
    let conf = aws_sdk_eks::config::Builder::from(cfg)
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .retry_partition(partition("eks"))
        .build();
    aws_sdk_eks::Client::from_conf(conf)
}

/// The Auto Scaling client, with podnet's retry policy over `cfg`'s.
pub fn autoscaling_client(cfg: &aws_config::SdkConfig) -> aws_sdk_autoscaling::Client {
    let conf = aws_sdk_autoscaling::config::Builder::from(cfg)
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .retry_partition(partition("autoscaling"))
        .build();
    aws_sdk_autoscaling::Client::from_conf(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_overrides_a_profile_that_turns_retries_off() {
        let cfg = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("ap-northeast-2"))
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build();
        let ec2 = ec2_client(&cfg);
        let rc = ec2.config().retry_config().expect("a retry config");
        assert_eq!(rc.max_attempts(), 25);
        assert_eq!(rc.max_backoff(), Duration::from_secs(20));
        let tc = ec2.config().timeout_config().expect("a timeout config");
        assert_eq!(tc.operation_timeout(), Some(Duration::from_secs(600)));
        let eks = eks_client(&cfg);
        assert_eq!(eks.config().retry_config().map(|r| r.max_attempts()), Some(25));
        assert_eq!(
            eks.config().retry_partition().map(|p| p.to_string()).as_deref(),
            Some("podnet-eks")
        );
    }
}
