//! What `rollback` removes: detached ENIs the VPC CNI left in the pod
//! subnets, the ingress rules podnet added (by rule id, so a rule someone
//! else added for the same CIDR is never touched), the pod subnets, the
//! tags podnet added to a subnet it adopted (and the route table it moved
//! it to), and the CIDR association.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Tag};

use super::{need, tags_of};
use crate::aws::ec2::model::*;
use crate::aws::error::{AwsError, from_sdk};

pub(super) async fn describe_network_interfaces(
    client: &Client,
    subnet_ids: &[String],
) -> Result<Vec<NetworkInterfaceInfo>, AwsError> {
    const OP: &str = "DescribeNetworkInterfaces";
    if subnet_ids.is_empty() {
        return Ok(vec![]);
    }
    let mut pages = client
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .set_values(Some(subnet_ids.to_vec()))
                .build(),
        )
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ec2", OP, Some(subnet_ids.join(",")), e))?;
        for n in page.network_interfaces() {
            out.push(NetworkInterfaceInfo {
                id: need(n.network_interface_id(), OP, "NetworkInterfaceId")?.to_string(),
                subnet_id: n.subnet_id().unwrap_or_default().to_string(),
                status: n.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                description: n.description().unwrap_or_default().to_string(),
                attached_to: n.attachment().and_then(|a| a.instance_id()).map(str::to_string),
                interface_type: n.interface_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                requester_managed: n.requester_managed().unwrap_or(false),
                tags: tags_of(n.tag_set()),
            });
        }
    }
    Ok(out)
}

pub(super) async fn delete_network_interface(client: &Client, eni_id: &str) -> Result<(), AwsError> {
    const OP: &str = "DeleteNetworkInterface";
    client
        .delete_network_interface()
        .network_interface_id(eni_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(eni_id.to_string()), e))?;
    Ok(())
}

pub(super) async fn revoke_ingress(client: &Client, group_id: &str, rule_ids: &[String]) -> Result<(), AwsError> {
    const OP: &str = "RevokeSecurityGroupIngress";
    client
        .revoke_security_group_ingress()
        .group_id(group_id)
        .set_security_group_rule_ids(Some(rule_ids.to_vec()))
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(format!("{group_id} {}", rule_ids.join(","))), e))?;
    Ok(())
}

pub(super) async fn delete_subnet(client: &Client, subnet_id: &str) -> Result<(), AwsError> {
    const OP: &str = "DeleteSubnet";
    client
        .delete_subnet()
        .subnet_id(subnet_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(subnet_id.to_string()), e))?;
    Ok(())
}

/// Returns the association's state after the call (`disassociating`).
pub(super) async fn disassociate_vpc_cidr_block(client: &Client, association_id: &str) -> Result<String, AwsError> {
    const OP: &str = "DisassociateVpcCidrBlock";
    let out = client
        .disassociate_vpc_cidr_block()
        .association_id(association_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(association_id.to_string()), e))?;
    Ok(out
        .cidr_block_association()
        .and_then(|a| a.cidr_block_state())
        .and_then(|s| s.state())
        .map(|s| s.as_str().to_string())
        .unwrap_or_default())
}

pub(super) async fn delete_tags(client: &Client, resource_id: &str, keys: &[String]) -> Result<(), AwsError> {
    const OP: &str = "DeleteTags";
    if keys.is_empty() {
        return Ok(());
    }
    client
        .delete_tags()
        .resources(resource_id)
        .set_tags(Some(keys.iter().map(|k| Tag::builder().key(k).build()).collect()))
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(resource_id.to_string()), e))?;
    Ok(())
}

pub(super) async fn disassociate_route_table(client: &Client, association_id: &str) -> Result<(), AwsError> {
    const OP: &str = "DisassociateRouteTable";
    client
        .disassociate_route_table()
        .association_id(association_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(association_id.to_string()), e))?;
    Ok(())
}
