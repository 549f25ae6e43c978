//! The scenario's security groups by role (cluster, nodes, load balancer,
//! database) and the ingress rules between them, within what EKS requires
//! of cluster and node groups
//! (<https://docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html>).

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{IpPermission, ResourceType};
use futures::future::try_join_all;

use super::common::{SeedError, cidr, ec2_err, group, missing, tags, tcp};
use crate::scenario::Scenario;

/// The security groups by role, with their ingress rules.
pub(super) async fn create_security_groups(
    c: &Client,
    s: &Scenario,
    vpc_id: &str,
    cluster_tag: &str,
) -> Result<BTreeMap<String, String>, SeedError> {
    let cl = s.cluster.as_str();
    let mut sgs = BTreeMap::new();
    for (role, desc) in [
        ("lb", "Internet-facing load balancer"),
        ("node", "EKS nodes"),
        ("rds", "RDS MySQL"),
        ("cluster", "EKS cluster (control plane)"),
        ("vpce", "VPC interface endpoints"),
    ] {
        let name = format!("{cl}-{role}");
        let mut kv = vec![("Name", name.as_str())];
        if role == "node" {
            kv.push(("karpenter.sh/discovery", cl));
        }
        if role == "cluster" {
            kv.push((cluster_tag, "owned"));
        }
        let id = c
            .create_security_group()
            .group_name(&name)
            .description(desc)
            .vpc_id(vpc_id)
            .tag_specifications(tags(ResourceType::SecurityGroup, &kv))
            .send()
            .await
            .map_err(|e| ec2_err("CreateSecurityGroup", e))?
            .group_id()
            .ok_or_else(|| missing("CreateSecurityGroup"))?
            .to_string();
        sgs.insert(role.to_string(), id);
    }
    let rules = ingress_rules(s, &sgs);
    try_join_all(rules.into_iter().map(|(g, p)| {
        c.authorize_security_group_ingress()
            .group_id(g)
            .ip_permissions(p)
            .send()
    }))
    .await
    .map_err(|e| ec2_err("AuthorizeSecurityGroupIngress", e))?;
    Ok(sgs)
}

/// The ingress rules between the security groups (and from the internet
/// and the service subnets).
fn ingress_rules(s: &Scenario, sgs: &BTreeMap<String, String>) -> Vec<(String, IpPermission)> {
    let sg = |r: &str| sgs.get(r).cloned().unwrap_or_default();
    let private_cidrs: Vec<String> = s.zones.iter().map(|z| z.private.to_string()).collect();
    vec![
        (
            sg("lb"),
            tcp(80, 80)
                .ip_ranges(cidr("0.0.0.0/0", "HTTP from the internet"))
                .build(),
        ),
        (
            sg("lb"),
            tcp(443, 443)
                .ip_ranges(cidr("0.0.0.0/0", "HTTPS from the internet"))
                .build(),
        ),
        (
            sg("node"),
            tcp(30000, 32767)
                .user_id_group_pairs(group(&sg("lb"), "NodePorts from the load balancer"))
                .build(),
        ),
        (
            sg("node"),
            tcp(443, 443)
                .user_id_group_pairs(group(&sg("cluster"), "Control plane to webhooks"))
                .build(),
        ),
        (
            sg("node"),
            tcp(10250, 10250)
                .user_id_group_pairs(group(&sg("cluster"), "Control plane to kubelet"))
                .build(),
        ),
        (
            sg("cluster"),
            tcp(443, 443)
                .user_id_group_pairs(group(&sg("node"), "Nodes to the API server"))
                .build(),
        ),
        // What EKS gives the cluster security group it creates: all traffic
        // among its members (control plane, managed nodes).
        (
            sg("cluster"),
            IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(group(&sg("cluster"), "EKS cluster security group: all traffic within"))
                .build(),
        ),
        (sg("rds"), {
            let mut b = tcp(3306, 3306);
            for c in &private_cidrs {
                b = b.ip_ranges(cidr(c, "MySQL from the service subnets"));
            }
            b.build()
        }),
        (sg("vpce"), {
            let mut b = tcp(443, 443);
            for c in &private_cidrs {
                b = b.ip_ranges(cidr(c, "HTTPS from the service subnets"));
            }
            b.build()
        }),
    ]
}
