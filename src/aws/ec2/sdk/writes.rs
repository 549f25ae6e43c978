//! What `apply` creates and changes: the CIDR association, ingress rules,
//! subnets and their route tables and tags, launch template versions.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use ipnet::Ipv4Net;

use super::{ingress_permission, need, tags_of};
use crate::aws::ec2::model::*;
use crate::aws::error::{AwsError, from_sdk};

pub(super) async fn associate_vpc_cidr_block(
    client: &Client,
    vpc_id: &str,
    cidr: Ipv4Net,
) -> Result<CidrAssociation, AwsError> {
    const OP: &str = "AssociateVpcCidrBlock";
    let out = client
        .associate_vpc_cidr_block()
        .vpc_id(vpc_id)
        .cidr_block(cidr.to_string())
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(format!("{cidr} on {vpc_id}")), e))?;
    let a = need(out.cidr_block_association(), OP, "CidrBlockAssociation")?;
    Ok(CidrAssociation {
        association_id: need(a.association_id(), OP, "AssociationId")?.to_string(),
        cidr,
        state: a
            .cidr_block_state()
            .and_then(|s| s.state())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    })
}

pub(super) async fn authorize_ingress(
    client: &Client,
    group_id: &str,
    rule: &NewIngress,
) -> Result<Vec<String>, AwsError> {
    const OP: &str = "AuthorizeSecurityGroupIngress";
    let perm = ingress_permission(rule);
    let out = client
        .authorize_security_group_ingress()
        .group_id(group_id)
        .ip_permissions(perm)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(group_id.to_string()), e))?;
    Ok(out
        .security_group_rules()
        .iter()
        .filter_map(|r| r.security_group_rule_id().map(str::to_string))
        .collect())
}

pub(super) async fn create_subnet(
    client: &Client,
    vpc_id: &str,
    az: &str,
    cidr: Ipv4Net,
    tags: &Tags,
) -> Result<SubnetInfo, AwsError> {
    const OP: &str = "CreateSubnet";
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Subnet)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build();
    let out = client
        .create_subnet()
        .vpc_id(vpc_id)
        .availability_zone(az)
        .cidr_block(cidr.to_string())
        .tag_specifications(spec)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(format!("{cidr} in {az}")), e))?;
    let s = need(out.subnet(), OP, "Subnet")?;
    Ok(SubnetInfo {
        id: need(s.subnet_id(), OP, "SubnetId")?.to_string(),
        vpc_id: vpc_id.to_string(),
        cidr,
        availability_zone: s.availability_zone().unwrap_or(az).to_string(),
        availability_zone_id: s.availability_zone_id().unwrap_or_default().to_string(),
        available_ips: s.available_ip_address_count().unwrap_or(0).max(0) as u64,
        tags: tags_of(s.tags()),
    })
}

pub(super) async fn associate_route_table(
    client: &Client,
    route_table_id: &str,
    subnet_id: &str,
) -> Result<String, AwsError> {
    const OP: &str = "AssociateRouteTable";
    let out = client
        .associate_route_table()
        .route_table_id(route_table_id)
        .subnet_id(subnet_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(format!("{subnet_id} → {route_table_id}")), e))?;
    Ok(need(out.association_id(), OP, "AssociationId")?.to_string())
}

pub(super) async fn replace_route_table_association(
    client: &Client,
    association_id: &str,
    route_table_id: &str,
) -> Result<String, AwsError> {
    const OP: &str = "ReplaceRouteTableAssociation";
    let out = client
        .replace_route_table_association()
        .association_id(association_id)
        .route_table_id(route_table_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(format!("{association_id} → {route_table_id}")), e))?;
    Ok(need(out.new_association_id(), OP, "NewAssociationId")?.to_string())
}

pub(super) async fn create_tags(client: &Client, resource_id: &str, tags: &Tags) -> Result<(), AwsError> {
    const OP: &str = "CreateTags";
    client
        .create_tags()
        .resources(resource_id)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(resource_id.to_string()), e))?;
    Ok(())
}

pub(super) async fn create_launch_template_version(
    client: &Client,
    launch_template_id: &str,
    source_version: &str,
    description: &str,
    client_token: &str,
    user_data: Option<&str>,
) -> Result<String, AwsError> {
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    const OP: &str = "CreateLaunchTemplateVersion";
    // EC2 copies the source version's data itself ("The new version
    // inherits the same launch parameters as the source version, except
    // for parameters that you explicitly specify in LaunchTemplateData",
    // CreateLaunchTemplateVersion in the EC2 API Reference): the version
    // differs only in being new, so EKS recomputes max pods for it — or,
    // for a custom AMI, in the user data podnet edited.
    let req = RequestLaunchTemplateData::builder().set_user_data(user_data.map(str::to_string));
    let out = client
        .create_launch_template_version()
        .launch_template_id(launch_template_id)
        .source_version(source_version)
        .version_description(description)
        .client_token(client_token)
        .launch_template_data(req.build())
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(launch_template_id.to_string()), e))?;
    let v = need(
        out.launch_template_version().and_then(|v| v.version_number()),
        OP,
        "VersionNumber",
    )?;
    Ok(v.to_string())
}
