//! The seed's machines: the network (in moto, or made up for benches) and
//! its IP accounting, the nodes with their primary addresses, their
//! instances, the CNI's ENI layout on each, and the pod addresses recorded
//! once the pods exist.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::Client;
use serde_json::Value;

use super::planned::Planned;
use super::workloads::{PodSlot, Workload};
use super::{ACCOUNT, asg_name};
use crate::instance_types;
use crate::ipam::{Ipam, SubnetPool, WarmConfig, layout_node};
use crate::kube::Store;
use crate::scenario::ec2::{self, NodeEniPlan, NodeLaunch, SeedError, fake_id};
use crate::scenario::objects::{self as obj, NodeOrigin, ago};
use crate::scenario::self_managed::Join;
use crate::scenario::{EniInfo, NodeInfo, Scenario, World, ZoneInfo, node_name, zone_id};
use crate::workloads::suffix;

fn fake_network(s: &Scenario) -> World {
    let zones = s
        .zones
        .iter()
        .map(|z| ZoneInfo {
            name: z.name.clone(),
            zone_id: zone_id(&z.name),
            public_subnet: z.public.map(|_| fake_id("subnet")),
            private_subnet: fake_id("subnet"),
            rds_subnet: z.rds.map(|_| fake_id("subnet")),
            private_cidr: z.private,
        })
        .collect();
    let sgs = ["lb", "node", "rds", "cluster", "vpce"]
        .iter()
        .map(|r| (r.to_string(), fake_id("sg")))
        .collect();
    World {
        cluster: s.cluster.clone(),
        region: s.region.clone(),
        account: ACCOUNT.to_string(),
        vpc_id: fake_id("vpc"),
        vpc_cidr: s.vpc_cidr,
        zones,
        security_groups: sgs,
        route_tables: BTreeMap::new(),
        internet_gateway: fake_id("igw"),
        vpc_endpoints: Vec::new(),
        launch_templates: BTreeMap::new(),
        ami_id: ec2::AMI_ID.to_string(),
        nodes: Vec::new(),
    }
}

/// The network (in moto, or made up), the IPAM with what other tenants
/// hold already taken, and the node groups' launch templates.
pub(super) async fn network(s: &Scenario, moto: Option<&Client>, join: &Join<'_>) -> Result<(World, Ipam), SeedError> {
    let mut world = match moto {
        Some(c) => ec2::network(c, s, ACCOUNT).await?,
        None => fake_network(s),
    };
    let mut ipam = Ipam::default();
    match moto {
        Some(c) => {
            ec2::sync_ipam(c, s, &world, &mut ipam).await?;
            ec2::other_tenants(c, s, &world, &mut ipam).await?;
        }
        None => {
            for (z, zi) in s.zones.iter().zip(&world.zones) {
                let mut pool = SubnetPool::new(&zi.private_subnet, z.private, &z.name);
                pool.allocate(z.other_tenant_ips)?;
                ipam.add_subnet(pool);
            }
        }
    }
    for g in s.node_groups.iter().filter(|g| g.launch_template) {
        let lt = match moto {
            Some(c) => ec2::launch_template(c, &world, g).await?,
            None => (fake_id("lt"), "1".to_string()),
        };
        world.launch_templates.insert(g.name.clone(), lt);
    }
    for g in &s.self_managed_groups {
        let lt = match moto {
            Some(c) => {
                let name = super::self_managed::template_name(&g.name);
                ec2::self_managed_template(c, &world, &name, &g.instance_type, &g.user_data(join)).await?
            }
            None => (fake_id("lt"), "1".to_string()),
        };
        world.launch_templates.insert(g.name.clone(), lt);
    }
    Ok((world, ipam))
}

/// Nodes and their primary addresses: the managed node groups' first, the
/// self-managed groups' next, then Karpenter's.
pub(super) fn plan_nodes(s: &Scenario, world: &World, ipam: &mut Ipam) -> Result<Vec<Planned>, SeedError> {
    let mut planned: Vec<Planned> = Vec::new();
    for g in &s.node_groups {
        let origin = || NodeOrigin::Managed {
            nodegroup: g.name.clone(),
            launch_template: world.launch_templates.get(&g.name).cloned(),
        };
        let group = GroupNodes {
            zones: g.zones.as_deref(),
            size: g.size,
            instance_type: &g.instance_type,
            age_days: 20,
        };
        planned.extend(plan_group(s, world, &group, origin, ipam)?);
    }
    for g in &s.self_managed_groups {
        let origin = || NodeOrigin::SelfManaged { group: g.name.clone() };
        let group = GroupNodes {
            zones: g.zones.as_deref(),
            size: g.size,
            instance_type: &g.instance_type,
            age_days: 40,
        };
        planned.extend(plan_group(s, world, &group, origin, ipam)?);
    }
    if let Some(k) = &s.karpenter {
        let mut idx = 0;
        for (pool, spec) in k.pools().into_iter().flat_map(|p| p.nodes.iter().map(move |n| (p, n))) {
            for _ in 0..spec.count {
                let origin = NodeOrigin::Karpenter {
                    nodepool: pool.nodepool.to_string(),
                    nodeclass: pool.nodeclass.to_string(),
                    nodeclaim: format!(
                        "{}-{}",
                        pool.nodepool,
                        suffix(&format!("{}/nodeclaim/{idx}", s.cluster))
                    ),
                };
                planned.push(plan_node(
                    s,
                    world,
                    &spec.zone,
                    &spec.instance_type,
                    origin,
                    ago(3, (idx % 24) as i64),
                    ipam,
                )?);
                idx += 1;
            }
        }
    }
    Ok(planned)
}

/// A node group's nodes as the scenario gives them.
struct GroupNodes<'a> {
    /// Default: every scenario zone.
    zones: Option<&'a [String]>,
    size: u32,
    instance_type: &'a str,
    /// How long ago the group's first node was created.
    age_days: i64,
}

/// A group's nodes, round-robin over its zones, an hour apart in age.
fn plan_group(
    s: &Scenario,
    world: &World,
    g: &GroupNodes<'_>,
    origin: impl Fn() -> NodeOrigin,
    ipam: &mut Ipam,
) -> Result<Vec<Planned>, SeedError> {
    let zones: Vec<String> = g
        .zones
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| s.zones.iter().map(|z| z.name.clone()).collect());
    (0..g.size)
        .map(|i| {
            let zone = &zones[i as usize % zones.len()];
            plan_node(
                s,
                world,
                zone,
                g.instance_type,
                origin(),
                ago(g.age_days, i64::from(i)),
                ipam,
            )
        })
        .collect()
}

/// One node: its primary address from the zone's private subnet.
fn plan_node(
    s: &Scenario,
    world: &World,
    zone: &str,
    itype: &str,
    origin: NodeOrigin,
    created: String,
    ipam: &mut Ipam,
) -> Result<Planned, SeedError> {
    let zone_info = |name: &str| world.zones.iter().find(|z| z.name == name).cloned();
    let zi = zone_info(zone).ok_or_else(|| SeedError::Other(format!("unknown zone {zone}")))?;
    let ip = ipam.subnet_mut(&zi.private_subnet)?.allocate(1)?[0];
    let t = instance_types::lookup(itype).ok_or_else(|| SeedError::Other(format!("unknown instance type {itype}")))?;
    let max_pods = obj::node_max_pods(s, t, &origin);
    let (nodegroup, nodeclaim) = match &origin {
        NodeOrigin::Managed { nodegroup, .. } => (Some(nodegroup.clone()), None),
        NodeOrigin::Karpenter { nodeclaim, .. } => (None, Some(nodeclaim.clone())),
        NodeOrigin::SelfManaged { .. } => (None, None),
    };
    Ok(Planned {
        info: NodeInfo {
            name: node_name(ip, &s.region),
            instance_id: String::new(),
            instance_type: itype.to_string(),
            zone: zone.to_string(),
            subnet_id: zi.private_subnet.clone(),
            ip,
            enis: Vec::new(),
            nodegroup,
            nodeclaim,
            pod_ips: BTreeMap::new(),
        },
        origin,
        max_pods,
        created,
        eni0: String::new(),
    })
}

/// Instances: in moto when the scenario asks for them, else made-up ids.
pub(super) async fn launch_instances(
    s: &Scenario,
    moto: Option<&Client>,
    world: &World,
    planned: &mut [Planned],
) -> Result<(), SeedError> {
    if let (Some(c), true) = (moto, s.moto.instances) {
        let launches: Vec<NodeLaunch> = planned.iter().map(|p| node_launch(s, world, p)).collect();
        let ids = ec2::launch_nodes(c, world, &launches).await?;
        for (p, (id, eni)) in planned.iter_mut().zip(ids) {
            p.info.instance_id = id;
            p.eni0 = eni;
        }
    } else {
        for p in planned.iter_mut() {
            p.info.instance_id = fake_id("i");
            p.eni0 = fake_id("eni");
        }
    }
    Ok(())
}

/// A node's instance, tagged the way EKS or Karpenter tags its instances.
fn node_launch(s: &Scenario, world: &World, p: &Planned) -> NodeLaunch {
    let mut tags: Vec<(String, String)> = vec![(format!("kubernetes.io/cluster/{}", s.cluster), "owned".into())];
    let mut lt = None;
    match &p.origin {
        NodeOrigin::Managed {
            nodegroup,
            launch_template,
        } => {
            tags.push(("Name".into(), nodegroup.clone()));
            tags.push(("eks:cluster-name".into(), s.cluster.clone()));
            tags.push(("eks:nodegroup-name".into(), nodegroup.clone()));
            tags.push(("aws:autoscaling:groupName".into(), asg_name(nodegroup)));
            tags.push(("k8s.io/cluster-autoscaler/enabled".into(), "true".into()));
            tags.push((format!("k8s.io/cluster-autoscaler/{}", s.cluster), "owned".into()));
            lt = launch_template.clone();
        }
        NodeOrigin::Karpenter {
            nodepool,
            nodeclass,
            nodeclaim,
        } => {
            tags.push(("Name".into(), p.info.name.clone()));
            tags.push(("karpenter.sh/nodepool".into(), nodepool.clone()));
            tags.push(("karpenter.k8s.aws/ec2nodeclass".into(), nodeclass.clone()));
            tags.push(("karpenter.sh/nodeclaim".into(), nodeclaim.clone()));
            tags.push(("eks:eks-cluster-name".into(), s.cluster.clone()));
        }
        NodeOrigin::SelfManaged { group } => {
            tags.extend(super::self_managed::instance_tags(s, group));
            lt = world.launch_templates.get(group).cloned();
        }
    }
    NodeLaunch {
        zone: p.info.zone.clone(),
        subnet_id: p.info.subnet_id.clone(),
        ip: p.info.ip,
        instance_type: p.info.instance_type.clone(),
        tags,
        launch_template: lt,
    }
}

/// The CNI's ENI layout on every node, addresses taken from the IPAM: the
/// moto work per node, and each node's pod addresses in order.
pub(super) fn layout_enis(
    s: &Scenario,
    planned: &mut [Planned],
    per_node: &[Vec<PodSlot>],
    workloads: &[Workload],
    warm: WarmConfig,
    ipam: &mut Ipam,
) -> Result<(Vec<NodeEniPlan>, Vec<Vec<Ipv4Addr>>), SeedError> {
    let mut eni_plans = Vec::new();
    let mut pod_ips: Vec<Vec<Ipv4Addr>> = Vec::new();
    for (p, pods) in planned.iter_mut().zip(per_node) {
        let t = instance_types::lookup(&p.info.instance_type)
            .ok_or_else(|| SeedError::Other(format!("unknown instance type {}", p.info.instance_type)))?;
        let need = pods.iter().filter(|ps| !workloads[ps.workload].daemonset).count() as u32;
        let layout = layout_node(need, warm, t.enis, t.ipv4_per_eni)
            .ok_or_else(|| SeedError::Other(format!("node {}: {need} pods do not fit its ENIs", p.info.name)))?;
        let pool = ipam.subnet_mut(&p.info.subnet_id)?;
        let mut all_secondaries = Vec::new();
        let mut extra = Vec::new();
        let mut enis = Vec::new();
        for (dev, n) in layout.secondaries.iter().enumerate() {
            if dev == 0 {
                let secs = pool.allocate(*n)?;
                enis.push(EniInfo {
                    id: p.eni0.clone(),
                    device_index: 0,
                    primary_ip: p.info.ip,
                    secondary_ips: secs.clone(),
                });
                all_secondaries.extend(secs);
            } else {
                let ips = pool.allocate(n + 1)?;
                let (primary, secs) = (ips[0], ips[1..].to_vec());
                extra.push((dev as u32, primary, secs.clone()));
                enis.push(EniInfo {
                    id: String::new(),
                    device_index: dev as u32,
                    primary_ip: primary,
                    secondary_ips: secs.clone(),
                });
                all_secondaries.extend(secs);
            }
        }
        eni_plans.push(NodeEniPlan {
            instance_id: p.info.instance_id.clone(),
            subnet_id: p.info.subnet_id.clone(),
            primary_eni: p.eni0.clone(),
            primary_secondaries: enis[0].secondary_ips.clone(),
            extra,
            cluster: s.cluster.clone(),
        });
        p.info.enis = enis;
        pod_ips.push(all_secondaries);
    }
    Ok((eni_plans, pod_ips))
}

/// The secondary ENIs in moto when the scenario mirrors pod addresses
/// there, else made-up ids.
pub(super) async fn attach_enis(
    s: &Scenario,
    moto: Option<&Client>,
    world: &World,
    planned: &mut [Planned],
    eni_plans: &[NodeEniPlan],
) -> Result<(), SeedError> {
    if let (Some(c), true, true) = (moto, s.moto.instances, s.moto.pod_ips) {
        let ids = ec2::attach_enis(c, world, eni_plans).await?;
        for (p, ids) in planned.iter_mut().zip(ids) {
            for (eni, id) in p.info.enis.iter_mut().skip(1).zip(ids) {
                eni.id = id;
            }
        }
    } else {
        for p in planned.iter_mut() {
            for eni in p.info.enis.iter_mut().skip(1) {
                eni.id = fake_id("eni");
            }
        }
    }
    Ok(())
}

/// Record pod addresses per node from what was created.
pub(super) fn record_pod_ips(store: &Store, planned: &mut [Planned]) {
    for p in planned.iter_mut() {
        for pod in store.pods_on_node(&p.info.name) {
            let host = pod
                .value
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let (false, Some(ip)) = (
                host,
                pod.value
                    .pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok()),
            ) {
                p.info.pod_ips.insert(format!("{}/{}", pod.namespace(), pod.name()), ip);
            }
        }
    }
}
