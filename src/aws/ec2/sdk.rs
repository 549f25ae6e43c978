//! [`super::Ec2Api`] over aws-sdk-ec2: every read paginated and filtered by
//! VPC, every failure classified by its code through `aws::error`.

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification};
use ipnet::Ipv4Net;

use super::Ec2Api;
use super::model::*;
use crate::aws::error::{AwsError, from_sdk};
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

fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

fn vpc_filter(vpc_id: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc_id).build()
}

fn parse_net(s: Option<&str>) -> Option<Ipv4Net> {
    s.and_then(|s| s.parse::<Ipv4Net>().ok()).map(|n| n.trunc())
}

/// A field EC2 must return; missing means a broken answer, not a panic.
fn need<T>(v: Option<T>, op: &'static str, what: &str) -> Result<T, AwsError> {
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

fn rules_from_permissions(perms: &[IpPermission]) -> Vec<IngressRule> {
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
        const OP: &str = "DescribeVpcs";
        let out = self
            .client
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

    async fn describe_subnets(&self, vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError> {
        const OP: &str = "DescribeSubnets";
        let mut pages = self
            .client
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

    async fn describe_route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTableInfo>, AwsError> {
        const OP: &str = "DescribeRouteTables";
        let mut pages = self
            .client
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

    async fn describe_security_groups(&self, vpc_id: &str) -> Result<Vec<SecurityGroupInfo>, AwsError> {
        const OP: &str = "DescribeSecurityGroups";
        let mut pages = self
            .client
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
                let mut pages = self
                    .client
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

    async fn describe_vpc_endpoints(&self, vpc_id: &str) -> Result<Vec<VpcEndpointInfo>, AwsError> {
        const OP: &str = "DescribeVpcEndpoints";
        let mut pages = self
            .client
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

    async fn describe_instance_types(&self, types: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        crate::aws::instance_types::describe(&self.client, types)
            .await
            .map_err(|e| AwsError {
                class: match &e {
                    crate::aws::instance_types::InstanceTypesError::Unknown(_) => {
                        crate::error_class::ErrorClass::NotFound
                    }
                    _ => crate::error_class::ErrorClass::Failed,
                },
                service: "ec2",
                operation: "DescribeInstanceTypes",
                resource: Some(types.join(",")),
                code: None,
                message: e.to_string(),
                status: None,
            })
    }

    async fn associate_vpc_cidr_block(&self, vpc_id: &str, cidr: Ipv4Net) -> Result<CidrAssociation, AwsError> {
        const OP: &str = "AssociateVpcCidrBlock";
        let out = self
            .client
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

    async fn authorize_ingress(&self, group_id: &str, rule: &NewIngress) -> Result<Vec<String>, AwsError> {
        const OP: &str = "AuthorizeSecurityGroupIngress";
        let perm = IpPermission::builder()
            .ip_protocol(&rule.protocol)
            .set_from_port(rule.from_port)
            .set_to_port(rule.to_port)
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip(rule.cidr.to_string())
                    .description(&rule.description)
                    .build(),
            )
            .build();
        let out = self
            .client
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

    async fn create_subnet(&self, vpc_id: &str, az: &str, cidr: Ipv4Net, tags: &Tags) -> Result<SubnetInfo, AwsError> {
        const OP: &str = "CreateSubnet";
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Subnet)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build();
        let out = self
            .client
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

    async fn associate_route_table(&self, route_table_id: &str, subnet_id: &str) -> Result<String, AwsError> {
        const OP: &str = "AssociateRouteTable";
        let out = self
            .client
            .associate_route_table()
            .route_table_id(route_table_id)
            .subnet_id(subnet_id)
            .send()
            .await
            .map_err(|e| from_sdk("ec2", OP, Some(format!("{subnet_id} → {route_table_id}")), e))?;
        Ok(need(out.association_id(), OP, "AssociationId")?.to_string())
    }

    async fn replace_route_table_association(
        &self,
        association_id: &str,
        route_table_id: &str,
    ) -> Result<String, AwsError> {
        const OP: &str = "ReplaceRouteTableAssociation";
        let out = self
            .client
            .replace_route_table_association()
            .association_id(association_id)
            .route_table_id(route_table_id)
            .send()
            .await
            .map_err(|e| from_sdk("ec2", OP, Some(format!("{association_id} → {route_table_id}")), e))?;
        Ok(need(out.new_association_id(), OP, "NewAssociationId")?.to_string())
    }

    async fn create_tags(&self, resource_id: &str, tags: &Tags) -> Result<(), AwsError> {
        const OP: &str = "CreateTags";
        self.client
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

    async fn create_launch_template_version(
        &self,
        launch_template_id: &str,
        source_version: &str,
        description: &str,
        client_token: &str,
    ) -> Result<String, AwsError> {
        use aws_sdk_ec2::types::RequestLaunchTemplateData;
        const OP: &str = "CreateLaunchTemplateVersion";
        // EC2 copies the source version's data itself ("The new version
        // inherits the same launch parameters as the source version, except
        // for parameters that you explicitly specify in LaunchTemplateData",
        // CreateLaunchTemplateVersion in the EC2 API Reference): the version
        // differs only in being new, so EKS recomputes max pods for it.
        let req = RequestLaunchTemplateData::builder();
        let out = self
            .client
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

    async fn launch_template_id(&self, name: &str) -> Result<String, AwsError> {
        const OP: &str = "DescribeLaunchTemplates";
        let out = self
            .client
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
}
