//! The EC2 calls podnet makes, behind the narrow [`Ec2Api`] trait, with
//! podnet's own small models of what it reads ([`model`]). [`SdkEc2`]
//! implements it with aws-sdk-ec2 (paginated reads, classified errors);
//! tests substitute their own implementation.

pub mod model;
mod sdk;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use super::error::AwsError;
use crate::capacity::InstanceInfo;
pub use model::*;
pub use sdk::SdkEc2;

/// The EC2 calls podnet makes.
#[async_trait]
pub trait Ec2Api: Send + Sync {
    async fn describe_vpc(&self, vpc_id: &str) -> Result<VpcInfo, AwsError>;
    async fn describe_subnets(&self, vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError>;
    async fn describe_route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTableInfo>, AwsError>;
    /// Security groups of the VPC, their ingress with rule ids.
    async fn describe_security_groups(&self, vpc_id: &str) -> Result<Vec<SecurityGroupInfo>, AwsError>;
    async fn describe_vpc_endpoints(&self, vpc_id: &str) -> Result<Vec<VpcEndpointInfo>, AwsError>;
    async fn describe_instance_types(&self, types: &[String]) -> Result<Vec<InstanceInfo>, AwsError>;

    async fn associate_vpc_cidr_block(&self, vpc_id: &str, cidr: Ipv4Net) -> Result<CidrAssociation, AwsError>;
    /// Returns the new rules' ids.
    async fn authorize_ingress(&self, group_id: &str, rule: &NewIngress) -> Result<Vec<String>, AwsError>;
    async fn create_subnet(&self, vpc_id: &str, az: &str, cidr: Ipv4Net, tags: &Tags) -> Result<SubnetInfo, AwsError>;
    /// Returns the association id.
    async fn associate_route_table(&self, route_table_id: &str, subnet_id: &str) -> Result<String, AwsError>;
    /// Moves an explicit association to another table; returns the new association id.
    async fn replace_route_table_association(
        &self,
        association_id: &str,
        route_table_id: &str,
    ) -> Result<String, AwsError>;
    async fn create_tags(&self, resource_id: &str, tags: &Tags) -> Result<(), AwsError>;
    /// A new version of a launch template with the source version's data
    /// (and `user_data`, base64, in place of the source's when given);
    /// returns the new version number. `client_token` makes it idempotent.
    async fn create_launch_template_version(
        &self,
        launch_template_id: &str,
        source_version: &str,
        description: &str,
        client_token: &str,
        user_data: Option<&str>,
    ) -> Result<String, AwsError>;
    /// A launch template version's user data (base64, as EC2 keeps it) and
    /// its version number; `version` may be `$Default` or `$Latest`.
    async fn launch_template_user_data(
        &self,
        launch_template_id: &str,
        version: &str,
    ) -> Result<LaunchTemplateVersionData, AwsError>;
    /// The launch template's id from its name.
    async fn launch_template_id(&self, name: &str) -> Result<String, AwsError>;

    // What a rollback removes.
    async fn describe_network_interfaces(&self, subnet_ids: &[String]) -> Result<Vec<NetworkInterfaceInfo>, AwsError>;
    async fn delete_network_interface(&self, eni_id: &str) -> Result<(), AwsError>;
    /// Revokes exactly these rules of the group, by id.
    async fn revoke_ingress(&self, group_id: &str, rule_ids: &[String]) -> Result<(), AwsError>;
    async fn delete_subnet(&self, subnet_id: &str) -> Result<(), AwsError>;
    /// Returns the association's state after the call.
    async fn disassociate_vpc_cidr_block(&self, association_id: &str) -> Result<String, AwsError>;
    async fn delete_tags(&self, resource_id: &str, keys: &[String]) -> Result<(), AwsError>;
    /// Removes an explicit subnet association: the subnet uses the main table again.
    async fn disassociate_route_table(&self, association_id: &str) -> Result<(), AwsError>;

    /// Asks EC2, with `DryRun`, whether these credentials may make `call`.
    async fn dry_run(&self, call: &DryRun) -> Result<Permission, AwsError>;
}
