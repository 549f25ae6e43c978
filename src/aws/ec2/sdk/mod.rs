//! [`super::Ec2Api`] over aws-sdk-ec2: every read paginated and filtered by
//! VPC, every failure classified by its code through `aws::error`. The
//! calls live by kind: `reads` (describe), `writes` (what `apply` creates
//! and changes) and `removals` (what `rollback` revokes, deletes and
//! disassociates); this module holds the client and what they share.

mod dry_run;
mod reads;
mod removals;
mod writes;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Tag};
use ipnet::Ipv4Net;

use super::Ec2Api;
use super::model::*;
use crate::aws::error::AwsError;
use crate::capacity::InstanceInfo;

/// [`Ec2Api`] over aws-sdk-ec2.
#[derive(Clone)]
pub struct SdkEc2 {
    client: Client,
}

impl SdkEc2 {
    pub fn new(client: Client) -> Self {
        SdkEc2 { client }
    }
}

pub(super) fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

pub(super) fn vpc_filter(vpc_id: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc_id).build()
}

pub(super) fn parse_net(s: Option<&str>) -> Option<Ipv4Net> {
    s.and_then(|s| s.parse::<Ipv4Net>().ok()).map(|n| n.trunc())
}

/// A field EC2 must return; missing means a broken answer, not a panic.
pub(super) fn need<T>(v: Option<T>, op: &'static str, what: &str) -> Result<T, AwsError> {
    v.ok_or_else(|| AwsError {
        class: crate::error_class::ErrorClass::Failed,
        service: "ec2",
        operation: op,
        resource: None,
        code: None,
        message: format!("the answer lacks {what}"),
        status: None,
    })
}

/// The ingress permission podnet adds: one CIDR, with its description.
pub(super) fn ingress_permission(rule: &NewIngress) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .set_from_port(rule.from_port)
        .set_to_port(rule.to_port)
        .ip_ranges(
            IpRange::builder()
                .cidr_ip(rule.cidr.to_string())
                .description(&rule.description)
                .build(),
        )
        .build()
}

pub(super) fn rules_from_permissions(perms: &[IpPermission]) -> Vec<IngressRule> {
    let mut out = Vec::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from, to) = (p.from_port(), p.to_port());
        let mut push = |source: RuleSource, description: Option<&str>| {
            out.push(IngressRule {
                rule_id: None,
                protocol: protocol.clone(),
                from_port: from,
                to_port: to,
                source,
                description: description.map(str::to_string),
            })
        };
        for r in p.ip_ranges() {
            if let Some(n) = parse_net(r.cidr_ip()) {
                push(RuleSource::Cidr(n), r.description());
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                push(RuleSource::Group(id.to_string()), g.description());
            }
        }
        for pl in p.prefix_list_ids() {
            if let Some(id) = pl.prefix_list_id() {
                push(RuleSource::PrefixList(id.to_string()), pl.description());
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(c) = r.cidr_ipv6() {
                push(RuleSource::Ipv6(c.to_string()), r.description());
            }
        }
    }
    out
}

#[async_trait]
impl Ec2Api for SdkEc2 {
    async fn describe_vpc(&self, vpc_id: &str) -> Result<VpcInfo, AwsError> {
        reads::describe_vpc(&self.client, vpc_id).await
    }

    async fn describe_subnets(&self, vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError> {
        reads::describe_subnets(&self.client, vpc_id).await
    }

    async fn describe_route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTableInfo>, AwsError> {
        reads::describe_route_tables(&self.client, vpc_id).await
    }

    async fn describe_security_groups(&self, vpc_id: &str) -> Result<Vec<SecurityGroupInfo>, AwsError> {
        reads::describe_security_groups(&self.client, vpc_id).await
    }

    async fn describe_vpc_endpoints(&self, vpc_id: &str) -> Result<Vec<VpcEndpointInfo>, AwsError> {
        reads::describe_vpc_endpoints(&self.client, vpc_id).await
    }

    async fn describe_instance_types(&self, types: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        reads::describe_instance_types(&self.client, types).await
    }

    async fn associate_vpc_cidr_block(&self, vpc_id: &str, cidr: Ipv4Net) -> Result<CidrAssociation, AwsError> {
        writes::associate_vpc_cidr_block(&self.client, vpc_id, cidr).await
    }

    async fn authorize_ingress(&self, group_id: &str, rule: &NewIngress) -> Result<Vec<String>, AwsError> {
        writes::authorize_ingress(&self.client, group_id, rule).await
    }

    async fn create_subnet(&self, vpc_id: &str, az: &str, cidr: Ipv4Net, tags: &Tags) -> Result<SubnetInfo, AwsError> {
        writes::create_subnet(&self.client, vpc_id, az, cidr, tags).await
    }

    async fn associate_route_table(&self, route_table_id: &str, subnet_id: &str) -> Result<String, AwsError> {
        writes::associate_route_table(&self.client, route_table_id, subnet_id).await
    }

    async fn replace_route_table_association(
        &self,
        association_id: &str,
        route_table_id: &str,
    ) -> Result<String, AwsError> {
        writes::replace_route_table_association(&self.client, association_id, route_table_id).await
    }

    async fn create_tags(&self, resource_id: &str, tags: &Tags) -> Result<(), AwsError> {
        writes::create_tags(&self.client, resource_id, tags).await
    }

    async fn create_launch_template_version(
        &self,
        launch_template_id: &str,
        source_version: &str,
        description: &str,
        client_token: &str,
        user_data: Option<&str>,
    ) -> Result<String, AwsError> {
        writes::create_launch_template_version(
            &self.client,
            launch_template_id,
            source_version,
            description,
            client_token,
            user_data,
        )
        .await
    }

    async fn launch_template_user_data(
        &self,
        launch_template_id: &str,
        version: &str,
    ) -> Result<LaunchTemplateVersionData, AwsError> {
        reads::launch_template_user_data(&self.client, launch_template_id, version).await
    }

    async fn launch_template_id(&self, name: &str) -> Result<String, AwsError> {
        reads::launch_template_id(&self.client, name).await
    }

    async fn describe_network_interfaces(&self, subnet_ids: &[String]) -> Result<Vec<NetworkInterfaceInfo>, AwsError> {
        removals::describe_network_interfaces(&self.client, subnet_ids).await
    }

    async fn delete_network_interface(&self, eni_id: &str) -> Result<(), AwsError> {
        removals::delete_network_interface(&self.client, eni_id).await
    }

    async fn revoke_ingress(&self, group_id: &str, rule_ids: &[String]) -> Result<(), AwsError> {
        removals::revoke_ingress(&self.client, group_id, rule_ids).await
    }

    async fn delete_subnet(&self, subnet_id: &str) -> Result<(), AwsError> {
        removals::delete_subnet(&self.client, subnet_id).await
    }

    async fn disassociate_vpc_cidr_block(&self, association_id: &str) -> Result<String, AwsError> {
        removals::disassociate_vpc_cidr_block(&self.client, association_id).await
    }

    async fn delete_tags(&self, resource_id: &str, keys: &[String]) -> Result<(), AwsError> {
        removals::delete_tags(&self.client, resource_id, keys).await
    }

    async fn disassociate_route_table(&self, association_id: &str) -> Result<(), AwsError> {
        removals::disassociate_route_table(&self.client, association_id).await
    }

    async fn dry_run(&self, call: &DryRun) -> Result<Permission, AwsError> {
        dry_run::ask(&self.client, call).await
    }
}
