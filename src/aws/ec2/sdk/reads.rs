//! The describe calls: paginated, filtered by VPC, mapped to podnet's models.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;

use super::{need, parse_net, rules_from_permissions, tags_of, vpc_filter};
use crate::aws::ec2::model::*;
use crate::aws::error::{AwsError, from_sdk};
use crate::capacity::InstanceInfo;

pub(super) async fn describe_vpc(client: &Client, vpc_id: &str) -> Result<VpcInfo, AwsError> {
    const OP: &str = "DescribeVpcs";
    let out = client
        .describe_vpcs()
        .vpc_ids(vpc_id)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(vpc_id.to_string()), e))?;
    let vpc = need(out.vpcs().first(), OP, "the VPC")?;
    let primary_cidr = need(parse_net(vpc.cidr_block()), OP, "the VPC's CidrBlock")?;
    let cidr_associations = vpc
        .cidr_block_association_set()
        .iter()
        .filter_map(|a| {
            Some(CidrAssociation {
                association_id: a.association_id()?.to_string(),
                cidr: parse_net(a.cidr_block())?,
                state: a
                    .cidr_block_state()
                    .and_then(|s| s.state())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok(VpcInfo {
        id: vpc_id.to_string(),
        primary_cidr,
        cidr_associations,
        has_ipv6: !vpc.ipv6_cidr_block_association_set().is_empty(),
    })
}

pub(super) async fn describe_subnets(client: &Client, vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError> {
    const OP: &str = "DescribeSubnets";
    let mut pages = client
        .describe_subnets()
        .filters(vpc_filter(vpc_id))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ec2", OP, Some(vpc_id.to_string()), e))?;
        for s in page.subnets() {
            let Some(cidr) = parse_net(s.cidr_block()) else {
                continue;
            };
            out.push(SubnetInfo {
                id: need(s.subnet_id(), OP, "SubnetId")?.to_string(),
                vpc_id: s.vpc_id().unwrap_or(vpc_id).to_string(),
                cidr,
                availability_zone: s.availability_zone().unwrap_or_default().to_string(),
                availability_zone_id: s.availability_zone_id().unwrap_or_default().to_string(),
                available_ips: s.available_ip_address_count().unwrap_or(0).max(0) as u64,
                tags: tags_of(s.tags()),
            });
        }
    }
    Ok(out)
}

pub(super) async fn describe_route_tables(client: &Client, vpc_id: &str) -> Result<Vec<RouteTableInfo>, AwsError> {
    const OP: &str = "DescribeRouteTables";
    let mut pages = client
        .describe_route_tables()
        .filters(vpc_filter(vpc_id))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ec2", OP, Some(vpc_id.to_string()), e))?;
        for rt in page.route_tables() {
            let associations = rt
                .associations()
                .iter()
                .filter(|a| {
                    a.association_state()
                        .and_then(|s| s.state())
                        .is_none_or(|s| s.as_str() == "associated" || s.as_str() == "associating")
                })
                .filter_map(|a| {
                    Some(RouteTableAssociation {
                        id: a.route_table_association_id()?.to_string(),
                        subnet_id: a.subnet_id().map(str::to_string),
                        main: a.main().unwrap_or(false),
                    })
                })
                .collect();
            let routes = rt
                .routes()
                .iter()
                .map(|r| {
                    let target = r
                        .gateway_id()
                        .or(r.nat_gateway_id())
                        .or(r.transit_gateway_id())
                        .or(r.vpc_peering_connection_id())
                        .or(r.network_interface_id())
                        .or(r.instance_id())
                        .or(r.local_gateway_id())
                        .or(r.carrier_gateway_id())
                        .or(r.core_network_arn())
                        .or(r.egress_only_internet_gateway_id())
                        .unwrap_or("unknown")
                        .to_string();
                    Route {
                        destination: parse_net(r.destination_cidr_block()),
                        destination_prefix_list: r.destination_prefix_list_id().map(str::to_string),
                        target,
                    }
                })
                .collect();
            out.push(RouteTableInfo {
                id: need(rt.route_table_id(), OP, "RouteTableId")?.to_string(),
                associations,
                routes,
                tags: tags_of(rt.tags()),
            });
        }
    }
    Ok(out)
}

pub(super) async fn describe_security_groups(
    client: &Client,
    vpc_id: &str,
) -> Result<Vec<SecurityGroupInfo>, AwsError> {
    const OP: &str = "DescribeSecurityGroups";
    let mut pages = client
        .describe_security_groups()
        .filters(vpc_filter(vpc_id))
        .into_paginator()
        .send();
    let mut groups = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ec2", OP, Some(vpc_id.to_string()), e))?;
        for g in page.security_groups() {
            groups.push(SecurityGroupInfo {
                id: need(g.group_id(), OP, "GroupId")?.to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
                description: g.description().unwrap_or_default().to_string(),
                vpc_id: g.vpc_id().unwrap_or(vpc_id).to_string(),
                tags: tags_of(g.tags()),
                ingress: rules_from_permissions(g.ip_permissions()),
            });
        }
    }
    // Rule ids come from DescribeSecurityGroupRules; a rollback needs them.
    if !groups.is_empty() {
        const ROP: &str = "DescribeSecurityGroupRules";
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        for chunk in ids.chunks(200) {
            let filter = Filter::builder()
                .name("group-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            let mut pages = client
                .describe_security_group_rules()
                .filters(filter)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| from_sdk("ec2", ROP, Some(vpc_id.to_string()), e))?;
                for r in page.security_group_rules() {
                    if r.is_egress().unwrap_or(false) {
                        continue;
                    }
                    let Some(g) = groups.iter_mut().find(|g| Some(g.id.as_str()) == r.group_id()) else {
                        continue;
                    };
                    let source = if let Some(c) = parse_net(r.cidr_ipv4()) {
                        RuleSource::Cidr(c)
                    } else if let Some(rg) = r.referenced_group_info().and_then(|x| x.group_id()) {
                        RuleSource::Group(rg.to_string())
                    } else if let Some(pl) = r.prefix_list_id() {
                        RuleSource::PrefixList(pl.to_string())
                    } else if let Some(v6) = r.cidr_ipv6() {
                        RuleSource::Ipv6(v6.to_string())
                    } else {
                        continue;
                    };
                    let proto = r.ip_protocol().unwrap_or("-1");
                    if let Some(rule) = g.ingress.iter_mut().find(|x| {
                        x.rule_id.is_none()
                            && x.source == source
                            && x.protocol == proto
                            && (proto == "-1" || (x.from_port == r.from_port() && x.to_port == r.to_port()))
                    }) {
                        rule.rule_id = r.security_group_rule_id().map(str::to_string);
                    }
                }
            }
        }
    }
    Ok(groups)
}

pub(super) async fn describe_vpc_endpoints(client: &Client, vpc_id: &str) -> Result<Vec<VpcEndpointInfo>, AwsError> {
    const OP: &str = "DescribeVpcEndpoints";
    let mut pages = client
        .describe_vpc_endpoints()
        .filters(vpc_filter(vpc_id))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ec2", OP, Some(vpc_id.to_string()), e))?;
        for e in page.vpc_endpoints() {
            out.push(VpcEndpointInfo {
                id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
                service_name: e.service_name().unwrap_or_default().to_string(),
                kind: e
                    .vpc_endpoint_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                security_group_ids: e
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
                subnet_ids: e.subnet_ids().to_vec(),
                route_table_ids: e.route_table_ids().to_vec(),
            });
        }
    }
    Ok(out)
}

pub(super) async fn describe_instance_types(client: &Client, types: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
    use crate::aws::instance_types::InstanceTypesError;
    crate::aws::instance_types::describe(client, types)
        .await
        .map_err(|e| match e {
            InstanceTypesError::Api(e) => e,
            other => AwsError {
                class: match &other {
                    InstanceTypesError::Unknown(_) => crate::error_class::ErrorClass::NotFound,
                    _ => crate::error_class::ErrorClass::Failed,
                },
                service: "ec2",
                operation: "DescribeInstanceTypes",
                resource: Some(types.join(",")),
                code: None,
                message: other.to_string(),
                status: None,
            },
        })
}

pub(super) async fn launch_template_id(client: &Client, name: &str) -> Result<String, AwsError> {
    const OP: &str = "DescribeLaunchTemplates";
    let out = client
        .describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(name.to_string()), e))?;
    Ok(need(
        out.launch_templates().first().and_then(|t| t.launch_template_id()),
        OP,
        "LaunchTemplateId",
    )?
    .to_string())
}

pub(super) async fn launch_template_user_data(
    client: &Client,
    launch_template_id: &str,
    version: &str,
) -> Result<LaunchTemplateVersionData, AwsError> {
    const OP: &str = "DescribeLaunchTemplateVersions";
    let out = client
        .describe_launch_template_versions()
        .launch_template_id(launch_template_id)
        .versions(version)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", OP, Some(launch_template_id.to_string()), e))?;
    let v = out.launch_template_versions().first();
    let number = need(v.and_then(|v| v.version_number()), OP, "VersionNumber")?;
    let data = v.and_then(|v| v.launch_template_data());
    Ok(LaunchTemplateVersionData {
        version: number.to_string(),
        user_data: data.and_then(|d| d.user_data()).map(str::to_string),
        instance_type: data.and_then(|d| d.instance_type()).map(|t| t.as_str().to_string()),
    })
}
