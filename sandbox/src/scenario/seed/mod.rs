//! Seeding a scenario end to end: network in moto, IP accounting, nodes
//! (instances with addresses chosen by the IPAM), pod placement, the CNI's
//! ENI layout per node (mirrored into moto as ENIs and secondary
//! addresses), the EKS model, and every Kubernetes object, loaded in bulk.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::Client;
use serde_json::{Value, json};

use super::ec2::{self, NodeEniPlan, NodeLaunch, SeedError, fake_id};
use super::objects::{self as obj, NodeOrigin, ago};
use super::placement::{self, Demand, Slot};
use super::{EniInfo, NodeInfo, Scenario, World, ZoneInfo, node_name, zone_id};
use crate::eks::{Addon, Cluster, Eks, LaunchTemplateRef, Nodegroup, epoch_now};
use crate::instance_types;
use crate::ipam::{Ipam, SubnetPool, WarmConfig, layout_node};
use crate::kube::resources::{self as r, POD};
use crate::kube::{ApiError, Store, WriteOptions};
use crate::workloads::{Owner, Placement, pod_from_template, suffix, template_hash};

/// The account every sandbox resource lives in (moto's default).
pub const ACCOUNT: &str = "123456789012";

pub struct SeedInput<'a> {
    pub scenario: &'a Scenario,
    /// moto; `None` seeds without any EC2 (ids are made up), for benches.
    pub ec2: Option<&'a Client>,
    pub store: &'a Store,
    pub eks: &'a Eks,
    /// What DescribeCluster reports as the endpoint.
    pub kube_endpoint: &'a str,
    /// What DescribeCluster reports as `certificateAuthority.data`: the
    /// cluster CA's PEM, base64-encoded.
    pub certificate_authority: &'a str,
}

pub struct Seeded {
    pub world: World,
    pub ipam: Ipam,
}

struct Planned {
    info: NodeInfo,
    origin: NodeOrigin,
    max_pods: u32,
    created: String,
    eni0: String,
}

/// A pod to create: which workload, which replica.
#[derive(Clone)]
struct PodSlot {
    workload: usize,
    ordinal: u32,
}

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

/// One kind of pod the placement knows about.
struct Workload {
    ns: String,
    /// The Deployment's (or DaemonSet's) object, before creation.
    object: Value,
    pdb: Option<Value>,
    demand: Demand,
    daemonset: bool,
}

fn create(store: &Store, rt: usize, v: Value) -> Result<std::sync::Arc<crate::kube::Stored>, ApiError> {
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    store.create(rt, &ns, v, &WriteOptions::internal())
}

/// Create a pod, retrying the name on the rare suffix collision.
fn create_pod(store: &Store, base: &str, seed: &str, mut build: impl FnMut(&str) -> Value) -> Result<(), ApiError> {
    for attempt in 0..20 {
        let name = format!("{base}-{}", suffix(&format!("{seed}/{attempt}")));
        match create(store, POD, build(&name)) {
            Err(e) if e.code == 409 => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(ApiError::internal(format!("could not name a pod of {base}")))
}

pub async fn seed(input: SeedInput<'_>) -> Result<Seeded, SeedError> {
    let s = input.scenario;
    let moto = input.ec2;
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
            Some(c) => ec2::launch_template(c, &world, &g.name).await?,
            None => (fake_id("lt"), "1".to_string()),
        };
        world.launch_templates.insert(g.name.clone(), lt);
    }

    // Nodes and their primary addresses.
    let zone_info = |name: &str| world.zones.iter().find(|z| z.name == name).cloned();
    let mut planned: Vec<Planned> = Vec::new();
    let mut add_node =
        |zone: &str, itype: &str, origin: NodeOrigin, created: String, ipam: &mut Ipam| -> Result<(), SeedError> {
            let zi = zone_info(zone).ok_or_else(|| SeedError::Other(format!("unknown zone {zone}")))?;
            let ip = ipam.subnet_mut(&zi.private_subnet)?.allocate(1)?[0];
            let t = instance_types::lookup(itype)
                .ok_or_else(|| SeedError::Other(format!("unknown instance type {itype}")))?;
            let max_pods = obj::node_max_pods(s, t, &origin);
            let (nodegroup, nodeclaim) = match &origin {
                NodeOrigin::Managed { nodegroup, .. } => (Some(nodegroup.clone()), None),
                NodeOrigin::Karpenter { nodeclaim, .. } => (None, Some(nodeclaim.clone())),
            };
            planned.push(Planned {
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
            });
            Ok(())
        };
    for g in &s.node_groups {
        let zones: Vec<String> = g
            .zones
            .clone()
            .unwrap_or_else(|| s.zones.iter().map(|z| z.name.clone()).collect());
        for i in 0..g.size {
            let zone = &zones[i as usize % zones.len()];
            let origin = NodeOrigin::Managed {
                nodegroup: g.name.clone(),
                launch_template: world.launch_templates.get(&g.name).cloned(),
            };
            add_node(zone, &g.instance_type, origin, ago(20, i64::from(i)), &mut ipam)?;
        }
    }
    if let Some(k) = &s.karpenter {
        let mut idx = 0;
        for spec in &k.nodes {
            for _ in 0..spec.count {
                let origin = NodeOrigin::Karpenter {
                    nodepool: k.nodepool.clone(),
                    nodeclass: k.nodeclass.clone(),
                    nodeclaim: format!("{}-{}", k.nodepool, suffix(&format!("{}/nodeclaim/{idx}", s.cluster))),
                };
                add_node(
                    &spec.zone,
                    &spec.instance_type,
                    origin,
                    ago(3, (idx % 24) as i64),
                    &mut ipam,
                )?;
                idx += 1;
            }
        }
    }

    // Instances.
    if let (Some(c), true) = (moto, s.moto.instances) {
        let launches: Vec<NodeLaunch> = planned
            .iter()
            .map(|p| {
                let mut tags: Vec<(String, String)> =
                    vec![(format!("kubernetes.io/cluster/{}", s.cluster), "owned".into())];
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
                }
                NodeLaunch {
                    zone: p.info.zone.clone(),
                    subnet_id: p.info.subnet_id.clone(),
                    ip: p.info.ip,
                    instance_type: p.info.instance_type.clone(),
                    tags,
                    launch_template: lt,
                }
            })
            .collect();
        let ids = ec2::launch_nodes(c, &world, &launches).await?;
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

    // Workloads and placement.
    let aws_node_env = obj::aws_node_env_for(s, &world);
    let warm = {
        let pairs = obj::env_pairs(&aws_node_env);
        WarmConfig::from_env(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    };
    let mut slots: Vec<Slot> = planned
        .iter()
        .map(|p| {
            let t = instance_types::lookup(&p.info.instance_type);
            let (cpu, mem) = t
                .map(|t| {
                    let (c, _) = t.allocatable(p.max_pods);
                    (
                        c,
                        obj::capacity_mem_mib(t).saturating_sub(11 * u64::from(p.max_pods) + 255 + 100),
                    )
                })
                .unwrap_or((1930, 3300));
            // Pods beyond what the ENIs hold could not start: cap by IPs too.
            let ip_pods = t.map(|t| t.pod_ips(t.enis)).unwrap_or(0) + 2;
            Slot::new(
                p.max_pods.min(ip_pods),
                cpu,
                mem,
                matches!(p.origin, NodeOrigin::Managed { .. }),
                0,
            )
        })
        .collect();
    let zone_index: BTreeMap<&str, usize> = s.zones.iter().enumerate().map(|(i, z)| (z.name.as_str(), i)).collect();
    for (slot, p) in slots.iter_mut().zip(&planned) {
        slot.zone = zone_index.get(p.info.zone.as_str()).copied().unwrap_or(0);
    }
    let any_managed = slots.iter().any(|s| s.managed);
    let created_ds = ago(30, 0);
    let mut workloads: Vec<Workload> = Vec::new();
    let ds_demand = |name: &str, v: &Value| {
        let (cpu, mem) = obj::requests(v.pointer("/spec/template/spec").unwrap_or(&Value::Null));
        Demand {
            name: name.to_string(),
            replicas: 0,
            cpu_m: cpu,
            mem_mib: mem,
            managed_only: false,
            one_per_node: false,
        }
    };
    let aws_node = obj::aws_node(s, &world, &created_ds);
    workloads.push(Workload {
        ns: "kube-system".into(),
        demand: ds_demand("aws-node", &aws_node),
        object: aws_node,
        pdb: None,
        daemonset: true,
    });
    let kube_proxy = obj::kube_proxy(s, &created_ds);
    workloads.push(Workload {
        ns: "kube-system".into(),
        demand: ds_demand("kube-proxy", &kube_proxy),
        object: kube_proxy,
        pdb: None,
        daemonset: true,
    });
    {
        let spec = obj::coredns_pod_spec(s);
        let (cpu, mem) = obj::requests(&spec);
        let sel = json!({"k8s-app": "kube-dns"});
        let labels =
            json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"});
        let mut dep = obj::deployment(
            "coredns",
            "kube-system",
            2,
            labels.clone(),
            sel.clone(),
            spec,
            json!({}),
            &created_ds,
        );
        dep["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": 1});
        dep["spec"]["template"]["metadata"]["labels"]["eks.amazonaws.com/component"] = json!("coredns");
        let pdb = obj::pdb(
            "coredns",
            "kube-system",
            json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns"}),
            None,
            Some(json!(1)),
            json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns"}),
            &created_ds,
        );
        workloads.push(Workload {
            ns: "kube-system".into(),
            object: dep,
            pdb: Some(pdb),
            demand: Demand {
                name: "coredns".into(),
                replicas: 2,
                cpu_m: cpu,
                mem_mib: mem,
                managed_only: any_managed,
                one_per_node: false,
            },
            daemonset: false,
        });
    }
    if let Some(k) = &s.karpenter {
        let spec = obj::karpenter_pod_spec(s);
        let (cpu, mem) = obj::requests(&spec);
        let sel = json!({"app.kubernetes.io/instance": "karpenter", "app.kubernetes.io/name": "karpenter"});
        let created = ago(25, 0);
        let mut dep = obj::deployment(
            "karpenter",
            "kube-system",
            k.controller_replicas,
            obj::helm_labels(&k.version),
            sel.clone(),
            spec,
            obj::helm_annotations(),
            &created,
        );
        // The chart's strategy: one replica at a time, since the pods'
        // hostname anti-affinity leaves no room to surge.
        dep["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
        let mut pdb = obj::pdb(
            "karpenter",
            "kube-system",
            sel,
            None,
            Some(json!(1)),
            obj::helm_labels(&k.version),
            &created,
        );
        pdb["metadata"]["annotations"] = obj::helm_annotations();
        workloads.push(Workload {
            ns: "kube-system".into(),
            object: dep,
            pdb: Some(pdb),
            demand: Demand {
                name: "karpenter".into(),
                replicas: k.controller_replicas,
                cpu_m: cpu,
                mem_mib: mem,
                managed_only: any_managed,
                one_per_node: true,
            },
            daemonset: false,
        });
    }
    for w in &s.workloads {
        let spec = obj::workload_pod_spec(&w.image, &w.cpu, &w.memory);
        let mut spec = spec;
        spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] = json!({"app": w.name});
        let (cpu, mem) = obj::requests(&spec);
        let sel = json!({"app": w.name});
        let created = ago(2, 0);
        let dep = obj::deployment(
            &w.name,
            &w.namespace,
            w.replicas,
            json!({"app": w.name}),
            sel.clone(),
            spec,
            json!({}),
            &created,
        );
        let pdb = w.pdb.as_ref().map(|p| {
            obj::pdb(
                &w.name,
                &w.namespace,
                sel.clone(),
                p.min_available.clone(),
                p.max_unavailable.clone(),
                json!({"app": w.name}),
                &created,
            )
        });
        workloads.push(Workload {
            ns: w.namespace.clone(),
            object: dep,
            pdb,
            demand: Demand {
                name: w.name.clone(),
                replicas: w.replicas,
                cpu_m: cpu,
                mem_mib: mem,
                managed_only: false,
                one_per_node: false,
            },
            daemonset: false,
        });
    }
    let mut per_node: Vec<Vec<PodSlot>> = vec![Vec::new(); planned.len()];
    let mut cursor = 0;
    for (wi, w) in workloads.iter().enumerate() {
        let nodes = if w.daemonset {
            placement::place_everywhere(&mut slots, &w.demand)
        } else {
            placement::place(&mut slots, &w.demand, &mut cursor)?
        };
        for (ordinal, n) in nodes.into_iter().enumerate() {
            per_node[n].push(PodSlot {
                workload: wi,
                ordinal: ordinal as u32,
            });
        }
    }

    // Addresses: the CNI's ENI layout on every node.
    let mut eni_plans = Vec::new();
    let mut pod_ips: Vec<Vec<Ipv4Addr>> = Vec::new();
    for (p, pods) in planned.iter_mut().zip(&per_node) {
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
    if let (Some(c), true, true) = (moto, s.moto.instances, s.moto.pod_ips) {
        let ids = ec2::attach_enis(c, &world, &eni_plans).await?;
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

    // EKS.
    let day = 86_400.0;
    let cluster_sg = world.security_groups.get("cluster").cloned().unwrap_or_default();
    input.eks.add_cluster(Cluster {
        name: s.cluster.clone(),
        arn: input.eks.arn(&format!("cluster/{}", s.cluster)),
        created_at: epoch_now() - 30.0 * day,
        version: s.kubernetes_version.clone(),
        platform_version: "eks.16".into(),
        endpoint: input.kube_endpoint.to_string(),
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/{}-cluster", s.cluster),
        vpc_id: world.vpc_id.clone(),
        subnet_ids: world.zones.iter().map(|z| z.private_subnet.clone()).collect(),
        security_group_ids: vec![cluster_sg.clone()],
        cluster_security_group_id: cluster_sg,
        service_ipv4_cidr: s.service_cidr.clone(),
        ip_family: s.ip_family.clone().unwrap_or_else(|| "ipv4".into()),
        auto_mode: s.auto_mode,
        certificate_authority: input.certificate_authority.to_string(),
        oidc_issuer: format!(
            "https://oidc.eks.{}.amazonaws.com/id/{}",
            s.region,
            template_hash(&json!(["oidc", s.cluster])).to_uppercase()
        ),
        tags: BTreeMap::from([("Environment".to_string(), "demo".to_string())]),
    });
    for g in &s.node_groups {
        let zones: Vec<String> = g
            .zones
            .clone()
            .unwrap_or_else(|| s.zones.iter().map(|z| z.name.clone()).collect());
        let subnets = world
            .zones
            .iter()
            .filter(|z| zones.contains(&z.name))
            .map(|z| z.private_subnet.clone())
            .collect();
        let lt = world.launch_templates.get(&g.name).map(|(id, v)| LaunchTemplateRef {
            name: format!("{}-20241104021139", g.name),
            id: id.clone(),
            version: v.clone(),
        });
        input.eks.add_nodegroup(
            &s.cluster,
            Nodegroup {
                name: g.name.clone(),
                arn: input
                    .eks
                    .arn(&format!("nodegroup/{}/{}/{}", s.cluster, g.name, uuid::Uuid::new_v4())),
                created_at: epoch_now() - 20.0 * day,
                modified_at: epoch_now() - 20.0 * day,
                version: s.kubernetes_version.clone(),
                release_version: obj::RELEASE_VERSION.into(),
                status: "ACTIVE".into(),
                capacity_type: "ON_DEMAND".into(),
                min_size: i64::from(g.min_size.unwrap_or(g.size)),
                max_size: i64::from(g.max_size.unwrap_or(g.size.max(1))),
                desired_size: i64::from(g.size),
                instance_types: vec![g.instance_type.clone()],
                subnets,
                ami_type: g.ami_type.clone(),
                node_role: format!("arn:aws:iam::{ACCOUNT}:role/{}-node", s.cluster),
                labels: BTreeMap::new(),
                taints: Vec::new(),
                launch_template: lt,
                asg_name: asg_name(&g.name),
                max_unavailable: 1,
                tags: BTreeMap::new(),
            },
        )?;
    }
    let addon = |name: &str, version: &str, config: Option<String>, role: Option<String>| Addon {
        name: name.to_string(),
        version: version.to_string(),
        status: "ACTIVE".into(),
        arn: input
            .eks
            .arn(&format!("addon/{}/{name}/{}", s.cluster, uuid::Uuid::new_v4())),
        created_at: epoch_now() - 30.0 * day,
        modified_at: epoch_now() - 10.0 * day,
        configuration_values: config,
        service_account_role_arn: role,
    };
    input.eks.add_addon(
        &s.cluster,
        addon(
            "vpc-cni",
            &s.vpc_cni.version,
            s.vpc_cni.configuration_values.clone(),
            Some(format!("arn:aws:iam::{ACCOUNT}:role/{}-vpc-cni", s.cluster)),
        ),
    )?;
    input
        .eks
        .add_addon(&s.cluster, addon("kube-proxy", "v1.31.3-eksbuild.2", None, None))?;
    input
        .eks
        .add_addon(&s.cluster, addon("coredns", "v1.11.4-eksbuild.2", None, None))?;

    // Kubernetes.
    let store = input.store;
    let objects = || -> Result<(), SeedError> {
        let created = ago(30, 0);
        for ns in obj::namespaces(&created) {
            create(store, r::NAMESPACE, ns)?;
        }
        create(store, r::CRD, crate::kube::crds::eniconfig())?;
        if s.karpenter.is_some() {
            for c in [
                crate::kube::crds::nodepool(),
                crate::kube::crds::nodeclaim(),
                crate::kube::crds::ec2nodeclass(),
            ] {
                create(store, r::CRD, c)?;
            }
        }
        for (_, svc) in obj::services(s, &created) {
            create(store, r::SERVICE, svc)?;
        }
        create(store, r::CONFIGMAP, obj::amazon_vpc_cni_configmap(&created))?;
        for p in &planned {
            create(store, r::NODE, obj::node(s, &p.info, &p.origin, p.max_pods, &p.created))?;
            create(store, r::LEASE, obj::node_lease(&p.info.name, &p.created))?;
        }
        // Workload objects, then their pods node by node.
        let mut owners: Vec<(Owner, Value, String)> = Vec::new();
        for w in &workloads {
            let top = create(
                store,
                if w.daemonset { r::DAEMONSET } else { r::DEPLOYMENT },
                w.object.clone(),
            )?;
            if let Some(pdb) = &w.pdb {
                create(store, r::PDB, pdb.clone())?;
            }
            if w.daemonset {
                let template = top.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
                owners.push((Owner::of(&top.value), template.clone(), template_hash(&template)));
            } else {
                let template = top.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let hash = template_hash(&template);
                let created = top
                    .value
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let rs = create(store, r::REPLICASET, obj::replicaset(&top.value, &hash, &created))?;
                let rs_template = rs.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
                owners.push((Owner::of(&rs.value), rs_template, hash));
            }
        }
        for (ni, (p, pods)) in planned.iter().zip(&per_node).enumerate() {
            let mut ips = pod_ips[ni].iter();
            for ps in pods {
                let w = &workloads[ps.workload];
                let (owner, template, hash) = &owners[ps.workload];
                let host = template
                    .pointer("/spec/hostNetwork")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let pod_ip = if host { None } else { ips.next().copied() };
                let created = if w.daemonset {
                    p.created.clone()
                } else {
                    ago(1, (ps.ordinal % 20) as i64)
                };
                let extra: Vec<(&str, String)> = if w.daemonset {
                    vec![
                        ("controller-revision-hash", hash.clone()),
                        ("pod-template-generation", "1".to_string()),
                    ]
                } else {
                    vec![]
                };
                let seed = if w.daemonset {
                    format!("{}/{}", owner.name, p.info.name)
                } else {
                    format!("{}/{}", owner.name, ps.ordinal)
                };
                create_pod(store, &owner.name, &seed, |name| {
                    pod_from_template(
                        template,
                        owner,
                        name,
                        &w.ns,
                        &extra,
                        &Placement {
                            node: &p.info.name,
                            node_ip: p.info.ip,
                            pod_ip,
                            created: &created,
                        },
                    )
                })?;
            }
        }
        if s.karpenter.is_some() {
            let karp: Vec<&Planned> = planned
                .iter()
                .filter(|p| matches!(p.origin, NodeOrigin::Karpenter { .. }))
                .collect();
            let cpu: u32 = karp
                .iter()
                .filter_map(|p| instance_types::lookup(&p.info.instance_type))
                .map(|t| t.vcpus)
                .sum();
            let mem: u64 = karp
                .iter()
                .filter_map(|p| instance_types::lookup(&p.info.instance_type))
                .map(obj::capacity_mem_mib)
                .sum();
            if let Some(np) = obj::nodepool(s, karp.len() as u32, cpu, mem, &ago(25, 0)) {
                let np = create(store, r::NODEPOOL, np)?;
                let mut hash = String::new();
                if let Some(nc) = obj::ec2nodeclass(s, &world, &ago(25, 0)) {
                    hash = obj::nodeclass_hash(&create(store, r::EC2NODECLASS, nc)?.value);
                }
                for p in karp {
                    if let Some(claim) = obj::nodeclaim(s, &p.info, np.uid(), &hash, p.max_pods, &p.created) {
                        create(store, r::NODECLAIM, claim)?;
                    }
                }
            }
        }
        Ok(())
    };
    store.bulk(objects)?;

    // Record pod addresses per node from what was created.
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
    world.nodes = planned.into_iter().map(|p| p.info).collect();
    Ok(Seeded { world, ipam })
}

/// The Auto Scaling group EKS names for a managed node group.
pub fn asg_name(nodegroup: &str) -> String {
    let h = template_hash(&json!(["asg", nodegroup]));
    let u = uuid::Uuid::from_u128(
        u128::from_str_radix(
            &format!(
                "{:0>32}",
                h.bytes().map(|b| format!("{:x}", b % 16)).collect::<String>()
            ),
            16,
        )
        .unwrap_or(0),
    );
    format!("eks-{nodegroup}-{u}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asg_names_are_stable() {
        assert_eq!(asg_name("x"), asg_name("x"));
        assert!(asg_name("podnet-demo-system").starts_with("eks-podnet-demo-system-"));
    }
}
