//! The scenario's network in moto: the VPC (DNS support and hostnames on),
//! each zone's public, private and RDS subnets with the tags the load
//! balancer controller and Karpenter's discovery look for
//! (<https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>),
//! the internet gateway and route tables, and the VPC endpoints of a
//! cluster with private nodes
//! (<https://docs.aws.amazon.com/eks/latest/userguide/private-clusters.html>).

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcEndpointType};
use futures::future::try_join_all;

use super::common::{AMI_ID, SeedError, ec2_err, missing, tags};
use super::security_groups::create_security_groups;
use crate::scenario::{Scenario, World, ZoneInfo, zone_id};

/// Create the network of a scenario; returns the world without nodes.
pub async fn network(c: &Client, s: &Scenario, account: &str) -> Result<World, SeedError> {
    let cl = s.cluster.as_str();
    let vpc_id = create_vpc(c, s).await?;
    // Subnets, all at once.
    let cluster_tag = format!("kubernetes.io/cluster/{cl}");
    let zones = create_subnets(c, s, &vpc_id, &cluster_tag).await?;
    // Internet gateway and route tables.
    let (igw, route_tables) = create_routing(c, s, &vpc_id, &zones).await?;
    // Security groups.
    let sgs = create_security_groups(c, s, &vpc_id, &cluster_tag).await?;
    // Endpoints: interface ones in the private subnets, S3 as a gateway.
    let endpoints = create_endpoints(c, s, &vpc_id, &zones, &sgs, &route_tables).await?;
    Ok(World {
        cluster: s.cluster.clone(),
        region: s.region.clone(),
        account: account.to_string(),
        vpc_id,
        vpc_cidr: s.vpc_cidr,
        zones,
        security_groups: sgs,
        route_tables,
        internet_gateway: igw,
        vpc_endpoints: endpoints,
        launch_templates: BTreeMap::new(),
        ami_id: AMI_ID.to_string(),
        nodes: Vec::new(),
    })
}

/// The VPC, with DNS support and hostnames on.
async fn create_vpc(c: &Client, s: &Scenario) -> Result<String, SeedError> {
    let cl = s.cluster.as_str();
    let vpc_name = format!("{cl}-vpc");
    let vpc = c
        .create_vpc()
        .cidr_block(s.vpc_cidr.to_string())
        .tag_specifications(tags(ResourceType::Vpc, &[("Name", &vpc_name)]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateVpc", e))?;
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| missing("CreateVpc"))?
        .to_string();
    for (support, hostnames) in [(true, false), (false, true)] {
        let mut req = c.modify_vpc_attribute().vpc_id(&vpc_id);
        if support {
            req = req.enable_dns_support(AttributeBooleanValue::builder().value(true).build());
        }
        if hostnames {
            req = req.enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build());
        }
        req.send().await.map_err(|e| ec2_err("ModifyVpcAttribute", e))?;
    }
    Ok(vpc_id)
}

/// Each zone's public, private and RDS subnets, tagged for the load
/// balancer controller and Karpenter's discovery.
async fn create_subnets(c: &Client, s: &Scenario, vpc_id: &str, cluster_tag: &str) -> Result<Vec<ZoneInfo>, SeedError> {
    let cl = s.cluster.as_str();
    let mut subnet_reqs = Vec::new();
    for z in &s.zones {
        let suffix = z.name.chars().last().unwrap_or('a');
        if let Some(p) = z.public {
            let name = format!("{cl}-public-{suffix}");
            subnet_reqs.push((
                z.name.clone(),
                "public",
                p,
                vec![
                    ("Name".to_string(), name),
                    ("kubernetes.io/role/elb".to_string(), "1".to_string()),
                ],
            ));
        }
        let name = format!("{cl}-private-{suffix}");
        subnet_reqs.push((
            z.name.clone(),
            "private",
            z.private,
            vec![
                ("Name".to_string(), name),
                ("karpenter.sh/discovery".to_string(), cl.to_string()),
                ("kubernetes.io/role/internal-elb".to_string(), "1".to_string()),
                (cluster_tag.to_string(), "shared".to_string()),
            ],
        ));
        if let Some(r) = z.rds {
            let name = format!("{cl}-rds-{suffix}");
            subnet_reqs.push((z.name.clone(), "rds", r, vec![("Name".to_string(), name)]));
        }
    }
    let created = try_join_all(subnet_reqs.iter().map(|(zone, role, net, kv)| {
        let kv: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let req = c
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(net.to_string())
            .availability_zone(zone)
            .tag_specifications(tags(ResourceType::Subnet, &kv));
        async move {
            let out = req.send().await.map_err(|e| ec2_err("CreateSubnet", e))?;
            let id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or_else(|| missing("CreateSubnet"))?
                .to_string();
            Ok::<_, SeedError>((zone.clone(), *role, id))
        }
    }))
    .await?;
    let find = |zone: &str, role: &str| {
        created
            .iter()
            .find(|(z, r, _)| z == zone && *r == role)
            .map(|(_, _, id)| id.clone())
    };
    let zones: Vec<ZoneInfo> = s
        .zones
        .iter()
        .map(|z| ZoneInfo {
            name: z.name.clone(),
            zone_id: zone_id(&z.name),
            public_subnet: find(&z.name, "public"),
            private_subnet: find(&z.name, "private").unwrap_or_default(),
            rds_subnet: find(&z.name, "rds"),
            private_cidr: z.private,
        })
        .collect();
    Ok(zones)
}

/// The internet gateway and one route table per subnet role, associated
/// with the zones' subnets: the gateway's id and the tables by role.
async fn create_routing(
    c: &Client,
    s: &Scenario,
    vpc_id: &str,
    zones: &[ZoneInfo],
) -> Result<(String, BTreeMap<String, String>), SeedError> {
    let cl = s.cluster.as_str();
    let igw = c
        .create_internet_gateway()
        .tag_specifications(tags(ResourceType::InternetGateway, &[("Name", &format!("{cl}-igw"))]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateInternetGateway", e))?
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .ok_or_else(|| missing("CreateInternetGateway"))?
        .to_string();
    c.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(vpc_id)
        .send()
        .await
        .map_err(|e| ec2_err("AttachInternetGateway", e))?;
    let mut route_tables = BTreeMap::new();
    for role in ["public", "private", "rds"] {
        let has = zones.iter().any(|z| match role {
            "public" => z.public_subnet.is_some(),
            "rds" => z.rds_subnet.is_some(),
            _ => true,
        });
        if !has {
            continue;
        }
        let rt = c
            .create_route_table()
            .vpc_id(vpc_id)
            .tag_specifications(tags(ResourceType::RouteTable, &[("Name", &format!("{cl}-{role}"))]))
            .send()
            .await
            .map_err(|e| ec2_err("CreateRouteTable", e))?
            .route_table()
            .and_then(|r| r.route_table_id())
            .ok_or_else(|| missing("CreateRouteTable"))?
            .to_string();
        route_tables.insert(role.to_string(), rt);
    }
    if let Some(rt) = route_tables.get("public") {
        c.create_route()
            .route_table_id(rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .map_err(|e| ec2_err("CreateRoute", e))?;
    }
    let mut assoc = Vec::new();
    for z in zones {
        for (role, subnet) in [
            ("public", z.public_subnet.clone()),
            ("private", Some(z.private_subnet.clone())),
            ("rds", z.rds_subnet.clone()),
        ] {
            if let (Some(sn), Some(rt)) = (subnet, route_tables.get(role)) {
                assoc.push(c.associate_route_table().route_table_id(rt).subnet_id(sn).send());
            }
        }
    }
    try_join_all(assoc)
        .await
        .map_err(|e| ec2_err("AssociateRouteTable", e))?;
    Ok((igw, route_tables))
}

/// The VPC endpoints: interface ones in the private subnets, S3 as a
/// gateway on the private route table.
async fn create_endpoints(
    c: &Client,
    s: &Scenario,
    vpc_id: &str,
    zones: &[ZoneInfo],
    sgs: &BTreeMap<String, String>,
    route_tables: &BTreeMap<String, String>,
) -> Result<Vec<String>, SeedError> {
    let cl = s.cluster.as_str();
    let sg = |r: &str| sgs.get(r).cloned().unwrap_or_default();
    // Endpoints: interface ones in the private subnets, S3 as a gateway.
    let private_subnets: Vec<String> = zones.iter().map(|z| z.private_subnet.clone()).collect();
    let mut endpoints = Vec::new();
    for svc in &s.endpoints.interface {
        let name = format!("com.amazonaws.{}.{svc}", s.region);
        let out = c
            .create_vpc_endpoint()
            .vpc_id(vpc_id)
            .service_name(&name)
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .set_subnet_ids(Some(private_subnets.clone()))
            .security_group_ids(sg("vpce"))
            .private_dns_enabled(true)
            .tag_specifications(tags(ResourceType::VpcEndpoint, &[("Name", &format!("{cl}-{svc}"))]))
            .send()
            .await
            .map_err(|e| ec2_err("CreateVpcEndpoint", e))?;
        if let Some(id) = out.vpc_endpoint().and_then(|v| v.vpc_endpoint_id()) {
            endpoints.push(id.to_string());
        }
    }
    if s.endpoints.s3_gateway
        && let Some(rt) = route_tables.get("private")
    {
        let out = c
            .create_vpc_endpoint()
            .vpc_id(vpc_id)
            .service_name(format!("com.amazonaws.{}.s3", s.region))
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .route_table_ids(rt)
            .tag_specifications(tags(ResourceType::VpcEndpoint, &[("Name", &format!("{cl}-s3"))]))
            .send()
            .await
            .map_err(|e| ec2_err("CreateVpcEndpoint", e))?;
        if let Some(id) = out.vpc_endpoint().and_then(|v| v.vpc_endpoint_id()) {
            endpoints.push(id.to_string());
        }
    }
    Ok(endpoints)
}
