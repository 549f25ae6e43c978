//! Addresses in moto: the IPAM learns what moto already holds, ENIs of other
//! tenants of the subnets (and the RDS instance's) take theirs, and nodes
//! get the secondary ENIs and addresses that hold their pods' IPs, as the
//! VPC CNI's ipamd attaches them
//! (<https://docs.aws.amazon.com/eks/latest/best-practices/vpc-cni.html>).

use std::net::Ipv4Addr;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, PrivateIpAddressSpecification, ResourceType};
use futures::future::try_join_all;

use super::common::{SeedError, ec2_err, missing, tags};
use crate::ipam::{Ipam, SubnetPool};
use crate::scenario::{Scenario, World};

/// Register the scenario's subnets with the IPAM and reserve every address
/// moto already handed out in them (endpoint ENIs).
pub async fn sync_ipam(c: &Client, s: &Scenario, w: &World, ipam: &mut Ipam) -> Result<(), SeedError> {
    for (z, zi) in s.zones.iter().zip(&w.zones) {
        ipam.add_subnet(SubnetPool::new(&zi.private_subnet, z.private, &z.name));
        if let (Some(net), Some(id)) = (z.public, &zi.public_subnet) {
            ipam.add_subnet(SubnetPool::new(id, net, &z.name));
        }
        if let (Some(net), Some(id)) = (z.rds, &zi.rds_subnet) {
            ipam.add_subnet(SubnetPool::new(id, net, &z.name));
        }
    }
    let out = c
        .describe_network_interfaces()
        .filters(Filter::builder().name("vpc-id").values(&w.vpc_id).build())
        .send()
        .await
        .map_err(|e| ec2_err("DescribeNetworkInterfaces", e))?;
    for eni in out.network_interfaces() {
        let Some(sn) = eni.subnet_id() else { continue };
        for a in eni.private_ip_addresses() {
            let Some(ip) = a.private_ip_address().and_then(|x| x.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let Ok(pool) = ipam.subnet_mut(sn) else { continue };
            if !pool.cidr.contains(&ip) {
                // moto gives endpoint ENIs random addresses outside their
                // subnet yet counts them against it; hold one address here
                // too so both agree on what is free.
                pool.allocate(1)?;
            } else if !pool.is_used(ip) {
                pool.reserve(ip)?;
            }
        }
    }
    Ok(())
}

/// ENIs holding addresses of other tenants of a subnet, and the RDS
/// instance's ENI.
pub async fn other_tenants(c: &Client, s: &Scenario, w: &World, ipam: &mut Ipam) -> Result<(), SeedError> {
    let mut reqs = Vec::new();
    for (z, zi) in s.zones.iter().zip(&w.zones) {
        if z.other_tenant_ips == 0 {
            continue;
        }
        let ips = ipam.subnet_mut(&zi.private_subnet)?.allocate(z.other_tenant_ips)?;
        for (i, chunk) in ips.chunks(30).enumerate() {
            let mut req = c
                .create_network_interface()
                .subnet_id(&zi.private_subnet)
                .description("Other services sharing this subnet (podnet-sandbox scenario: other_tenant_ips)")
                .tag_specifications(tags(
                    ResourceType::NetworkInterface,
                    &[
                        ("Name", &format!("other-tenant-{}-{i}", zi.name)),
                        ("podnet-sandbox/role", "other-tenant"),
                    ],
                ));
            for (j, ip) in chunk.iter().enumerate() {
                req = req.private_ip_addresses(
                    PrivateIpAddressSpecification::builder()
                        .private_ip_address(ip.to_string())
                        .primary(j == 0)
                        .build(),
                );
            }
            reqs.push(req.send());
        }
    }
    try_join_all(reqs)
        .await
        .map_err(|e| ec2_err("CreateNetworkInterface (other tenants)", e))?;
    if let Some(zi) = w.zones.iter().find(|z| z.rds_subnet.is_some())
        && let Some(sn) = &zi.rds_subnet
    {
        let ip = ipam.subnet_mut(sn)?.allocate(1)?;
        c.create_network_interface()
            .subnet_id(sn)
            .description("RDSNetworkInterface")
            .groups(w.security_groups.get("rds").cloned().unwrap_or_default())
            .private_ip_address(ip[0].to_string())
            .tag_specifications(tags(
                ResourceType::NetworkInterface,
                &[("Name", &format!("{}-mysql", w.cluster))],
            ))
            .send()
            .await
            .map_err(|e| ec2_err("CreateNetworkInterface (RDS)", e))?;
    }
    Ok(())
}

/// The ENI work of one node: secondaries on the primary ENI, and further
/// ENIs (primary + secondaries) to create and attach.
pub struct NodeEniPlan {
    pub instance_id: String,
    pub subnet_id: String,
    pub primary_eni: String,
    pub primary_secondaries: Vec<Ipv4Addr>,
    /// (device index, primary address, secondary addresses)
    pub extra: Vec<(u32, Ipv4Addr, Vec<Ipv4Addr>)>,
    pub cluster: String,
}

/// Mirror nodes' ENI layouts into moto; returns the extra ENI ids per node.
pub async fn attach_enis(c: &Client, w: &World, plans: &[NodeEniPlan]) -> Result<Vec<Vec<String>>, SeedError> {
    let node_sg = w.security_groups.get("node").cloned().unwrap_or_default();
    try_join_all(plans.iter().map(|p| {
        let node_sg = node_sg.clone();
        async move {
            if !p.primary_secondaries.is_empty() {
                let mut req = c.assign_private_ip_addresses().network_interface_id(&p.primary_eni);
                for ip in &p.primary_secondaries {
                    req = req.private_ip_addresses(ip.to_string());
                }
                req.send().await.map_err(|e| ec2_err("AssignPrivateIpAddresses", e))?;
            }
            let mut ids = Vec::new();
            for (dev, primary, secs) in &p.extra {
                let mut req = c
                    .create_network_interface()
                    .subnet_id(&p.subnet_id)
                    .groups(&node_sg)
                    .description(format!("aws-K8S-{}", p.instance_id))
                    .private_ip_addresses(
                        PrivateIpAddressSpecification::builder()
                            .private_ip_address(primary.to_string())
                            .primary(true)
                            .build(),
                    )
                    .tag_specifications(tags(
                        ResourceType::NetworkInterface,
                        &[
                            ("cluster.k8s.amazonaws.com/name", &p.cluster),
                            ("node.k8s.amazonaws.com/instance_id", &p.instance_id),
                        ],
                    ));
                for ip in secs {
                    req = req.private_ip_addresses(
                        PrivateIpAddressSpecification::builder()
                            .private_ip_address(ip.to_string())
                            .primary(false)
                            .build(),
                    );
                }
                let eni = req
                    .send()
                    .await
                    .map_err(|e| ec2_err("CreateNetworkInterface", e))?
                    .network_interface()
                    .and_then(|n| n.network_interface_id())
                    .ok_or_else(|| missing("CreateNetworkInterface"))?
                    .to_string();
                c.attach_network_interface()
                    .network_interface_id(&eni)
                    .instance_id(&p.instance_id)
                    .device_index(*dev as i32)
                    .send()
                    .await
                    .map_err(|e| ec2_err("AttachNetworkInterface", e))?;
                ids.push(eni);
            }
            Ok::<_, SeedError>(ids)
        }
    }))
    .await
}
