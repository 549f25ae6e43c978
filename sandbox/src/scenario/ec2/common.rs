//! What every seeding step shares: the error type, a moto client with dummy
//! credentials, tag and security-group rule builders, and the AMI id nodes
//! run.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair};

/// A failure while seeding.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("EC2 (moto) {what}: {detail}")]
    Ec2 { what: String, detail: String },
    #[error("IP accounting: {0}")]
    Ipam(#[from] crate::ipam::IpamError),
    #[error("placement: {0}")]
    Placement(#[from] crate::scenario::placement::PlacementError),
    #[error("Kubernetes object: {0}")]
    Kube(#[from] crate::kube::ApiError),
    #[error("EKS: {0}")]
    Eks(#[from] crate::eks::EksError),
    #[error("{0}")]
    Other(String),
}

pub(super) fn ec2_err<E: std::error::Error>(what: &str, e: E) -> SeedError {
    SeedError::Ec2 {
        what: what.to_string(),
        detail: DisplayErrorContext(e).to_string(),
    }
}

pub(super) fn missing(what: &str) -> SeedError {
    SeedError::Ec2 {
        what: what.to_string(),
        detail: "moto's answer lacked the id".into(),
    }
}

/// A client for moto, with the scenario's region and dummy credentials.
pub fn moto_client(endpoint: &str, region: &str) -> Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "podnet-sandbox"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(conf)
}

pub(super) fn tags(rt: ResourceType, kv: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(rt);
    for (k, v) in kv {
        b = b.tags(Tag::builder().key(*k).value(*v).build());
    }
    b.build()
}

pub(super) fn tcp(from: i32, to: i32) -> aws_sdk_ec2::types::builders::IpPermissionBuilder {
    IpPermission::builder().ip_protocol("tcp").from_port(from).to_port(to)
}

pub(super) fn cidr(c: &str, desc: &str) -> IpRange {
    IpRange::builder().cidr_ip(c).description(desc).build()
}

pub(super) fn group(id: &str, desc: &str) -> UserIdGroupPair {
    UserIdGroupPair::builder().group_id(id).description(desc).build()
}

/// A made-up id for resources the scenario keeps out of moto.
pub fn fake_id(prefix: &str) -> String {
    let hex: String = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &hex[..17])
}

/// The AL2023 EKS-optimized AMI id used for nodes (one of moto's images).
pub const AMI_ID: &str = "ami-06e9e3574a0459db2";
