//! Scenario seeding: the reference scenario's shape (nodes, pods, labels,
//! capacity), pod addresses inside their node's subnet and within what the
//! subnets hold, moto instances in the right subnets with the sandbox's IP
//! accounting matching moto's counts, boto3's view, and other scenarios.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use podnet_sandbox::kube::ListOptions;
use podnet_sandbox::kube::resources::{DAEMONSET, DEPLOYMENT, NODE, NODECLAIM, POD};
use podnet_sandbox::{Sandbox, SandboxOptions, Scenario};
use serde_json::Value;

fn list(sb: &Sandbox, rt: usize) -> Vec<Value> {
    sb.store().dyn_api(rt).list(None, &ListOptions::default()).unwrap()
}

/// Invariants every seeded scenario keeps.
fn check_invariants(sb: &Sandbox) {
    let nodes = list(sb, NODE);
    let pods = list(sb, POD);
    let subnet_of: BTreeMap<String, Ipv4Net> = sb
        .world()
        .zones
        .iter()
        .map(|z| (z.private_subnet.clone(), z.private_cidr))
        .collect();
    let mut seen: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for n in &nodes {
        let name = n["metadata"]["name"].as_str().unwrap();
        let info = sb.world().nodes.iter().find(|x| x.name == name).expect("node in world");
        let cidr = subnet_of[&info.subnet_id];
        assert!(cidr.contains(&info.ip), "{name} in its subnet");
        assert!(seen.insert(info.ip), "node IP unique");
        let labels = &n["metadata"]["labels"];
        for l in [
            "topology.kubernetes.io/zone",
            "topology.kubernetes.io/region",
            "node.kubernetes.io/instance-type",
            "kubernetes.io/arch",
            "kubernetes.io/os",
            "kubernetes.io/hostname",
        ] {
            assert!(labels[l].is_string(), "{name} has {l}");
        }
        assert_eq!(labels["topology.kubernetes.io/zone"], info.zone);
        assert_eq!(
            n["spec"]["providerID"],
            format!("aws:///{}/{}", info.zone, info.instance_id)
        );
        assert_eq!(
            n["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap()[..6],
            *"v1.31."
        );
        let cap: usize = n["status"]["capacity"]["pods"].as_str().unwrap().parse().unwrap();
        let t = podnet_sandbox::instance_types::lookup(&info.instance_type).unwrap();
        assert_eq!(
            cap as u32,
            t.default_max_pods(),
            "{name} capacity.pods follows the default formula"
        );
        let on_node: Vec<&Value> = pods.iter().filter(|p| p["spec"]["nodeName"] == name).collect();
        assert!(on_node.len() <= cap, "{name}: {} pods > {cap}", on_node.len());
        for p in on_node {
            let ip: Ipv4Addr = p["status"]["podIP"].as_str().unwrap().parse().unwrap();
            assert_eq!(p["status"]["hostIP"], info.ip.to_string());
            if p["spec"]["hostNetwork"] == true {
                assert_eq!(ip, info.ip, "hostNetwork pods use the node IP");
            } else {
                assert!(cidr.contains(&ip), "pod IP {ip} inside {cidr}");
                assert!(seen.insert(ip), "pod IP {ip} unique");
                let off = u32::from(ip) - u32::from(cidr.network());
                assert!(off > 3 && ip != cidr.broadcast(), "{ip} is not AWS-reserved");
            }
            assert_eq!(p["status"]["phase"], "Running");
            assert!(p["metadata"]["ownerReferences"][0]["controller"] == true);
        }
    }
    let ipam = sb.ipam().lock().unwrap();
    for z in &sb.world().zones {
        let pool = ipam.subnet(&z.private_subnet).unwrap();
        let used_by_cluster = seen.iter().filter(|ip| z.private_cidr.contains(*ip)).count() as u32;
        assert!(used_by_cluster <= pool.usable());
        assert!(
            pool.usable() - pool.free() >= used_by_cluster,
            "IPAM accounts for every address"
        );
    }
}

#[test]
fn the_reference_scenario() {
    let sb = common::sandbox();
    check_invariants(&sb);
    let nodes = list(&sb, NODE);
    assert_eq!(nodes.len(), 6);
    let by = |k: &str| -> Vec<String> {
        nodes
            .iter()
            .filter_map(|n| n["metadata"]["labels"][k].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(by("eks.amazonaws.com/nodegroup"), vec!["podnet-demo-system"; 2]);
    assert_eq!(by("karpenter.sh/nodepool"), vec!["default"; 4]);
    let zones: BTreeSet<String> = by("topology.kubernetes.io/zone").into_iter().collect();
    assert_eq!(
        zones,
        BTreeSet::from(["ap-northeast-2a".to_string(), "ap-northeast-2c".to_string()])
    );
    let types: BTreeSet<String> = by("node.kubernetes.io/instance-type").into_iter().collect();
    assert_eq!(types, BTreeSet::from(["t3.large".to_string(), "t3.medium".to_string()]));
    let caps: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| {
            (
                n["metadata"]["labels"]["node.kubernetes.io/instance-type"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                n["status"]["capacity"]["pods"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(caps["t3.medium"], "17");
    assert_eq!(caps["t3.large"], "35");
    assert_eq!(list(&sb, POD).len(), 130);
    let ds: Vec<String> = list(&sb, DAEMONSET)
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ds, ["aws-node", "kube-proxy"]);
    let deps: Vec<String> = list(&sb, DEPLOYMENT)
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        deps,
        [
            "example-service",
            "aws-load-balancer-controller",
            "coredns",
            "karpenter",
            "metrics-server"
        ]
    );

    // aws-node: the image and the add-on's configuration values
    let aws_node = sb.store().dyn_api(DAEMONSET).get("kube-system", "aws-node").unwrap();
    let c = &aws_node["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "602401143452.dkr.ecr.ap-northeast-2.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1"
    );
    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env["WARM_IP_TARGET"], "2");
    assert_eq!(env["MINIMUM_IP_TARGET"], "4");
    assert_eq!(env["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "false");
    assert_eq!(env["ENABLE_SUBNET_DISCOVERY"], "true");
    assert_eq!(aws_node["status"]["numberReady"], 6);

    // Karpenter: Helm-installed, no RESERVED_ENIS, on the managed nodes
    let k = sb.store().dyn_api(DEPLOYMENT).get("kube-system", "karpenter").unwrap();
    assert_eq!(k["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(k["metadata"]["annotations"]["meta.helm.sh/release-name"], "karpenter");
    let kenv = k["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(!kenv.iter().any(|e| e["name"] == "RESERVED_ENIS"));
    let managed: BTreeSet<String> = sb
        .world()
        .nodes
        .iter()
        .filter(|n| n.nodegroup.is_some())
        .map(|n| n.name.clone())
        .collect();
    for p in list(&sb, POD)
        .iter()
        .filter(|p| p["metadata"]["labels"]["app.kubernetes.io/name"] == "karpenter")
    {
        assert!(managed.contains(p["spec"]["nodeName"].as_str().unwrap()));
    }
    let claims = list(&sb, NODECLAIM);
    assert_eq!(claims.len(), 4);
    for cl in &claims {
        let node = cl["status"]["nodeName"].as_str().unwrap();
        let n = nodes.iter().find(|n| n["metadata"]["name"] == node).unwrap();
        assert_eq!(cl["status"]["providerID"], n["spec"]["providerID"]);
    }

    // moto: an instance per node, in the node's subnet, with its address;
    // the sandbox's IP accounting agrees with moto's free-address counts.
    let ec2 = sb.moto_client().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let out = ec2.describe_instances().send().await.unwrap();
        let instances: Vec<_> = out.reservations().iter().flat_map(|r| r.instances().to_vec()).collect();
        assert_eq!(instances.len(), 6);
        for n in &sb.world().nodes {
            let i = instances
                .iter()
                .find(|i| i.instance_id() == Some(n.instance_id.as_str()))
                .expect("instance exists");
            assert_eq!(i.subnet_id(), Some(n.subnet_id.as_str()));
            assert_eq!(i.private_ip_address(), Some(n.ip.to_string().as_str()));
            assert_eq!(i.placement().and_then(|p| p.availability_zone()), Some(n.zone.as_str()));
            assert_eq!(i.network_interfaces().len(), n.enis.len());
        }
        let subnets = ec2.describe_subnets().send().await.unwrap();
        let ipam = sb.ipam().lock().unwrap();
        for z in &sb.world().zones {
            let s = subnets
                .subnets()
                .iter()
                .find(|s| s.subnet_id() == Some(z.private_subnet.as_str()))
                .unwrap();
            let pool = ipam.subnet(&z.private_subnet).unwrap();
            assert_eq!(s.available_ip_address_count(), Some(pool.free() as i32), "{}", z.name);
            assert!(pool.free() < 30, "{} is nearly full: {} free", z.name, pool.free());
        }
    });
    assert!(
        sb.calls().is_empty(),
        "seeding talks to moto directly, not through the audited proxy"
    );
}

#[test]
fn boto3_sees_the_network() {
    let sb = common::sandbox();
    let out = common::python(
        &sb,
        r#"
import boto3, json
ec2 = boto3.client("ec2")
vpc = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.255.0.0/16"]}])["Vpcs"][0]
subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
running = [i for r in ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
sgs = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["SecurityGroups"]
endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["VpcEndpoints"]
print(json.dumps({
    "cidr": vpc["CidrBlock"],
    "subnets": sorted(s["CidrBlock"] for s in subnets),
    "running": sorted(i["PrivateIpAddress"] for i in running),
    "sgs": sorted(g["GroupName"] for g in sgs),
    "rds": [p for g in sgs if g["GroupName"] == "podnet-demo-rds" for p in g["IpPermissions"]],
    "endpoints": sorted(e["ServiceName"].rsplit(".", 1)[-1] + ":" + e["VpcEndpointType"] for e in endpoints),
}))
"#,
    );
    assert!(out.ok, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["cidr"], "10.255.0.0/16");
    assert_eq!(
        v["subnets"],
        serde_json::json!([
            "10.255.1.0/24",
            "10.255.11.0/24",
            "10.255.12.0/24",
            "10.255.2.0/24",
            "10.255.21.0/24",
            "10.255.22.0/24"
        ])
    );
    assert_eq!(v["running"].as_array().unwrap().len(), 6);
    for ip in v["running"].as_array().unwrap() {
        let ip = ip.as_str().unwrap();
        assert!(ip.starts_with("10.255.11.") || ip.starts_with("10.255.12."), "{ip}");
    }
    for g in [
        "podnet-demo-lb",
        "podnet-demo-node",
        "podnet-demo-rds",
        "podnet-demo-cluster",
        "podnet-demo-vpce",
    ] {
        assert!(v["sgs"].as_array().unwrap().iter().any(|x| x == g), "{g}");
    }
    let rds = &v["rds"][0];
    assert_eq!(rds["FromPort"], 3306);
    let cidrs: Vec<&str> = rds["IpRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["CidrIp"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["10.255.11.0/24", "10.255.12.0/24"]);
    assert!(v["endpoints"].as_array().unwrap().iter().any(|e| e == "s3:Gateway"));
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 9);
    let calls = sb.calls();
    assert!(
        calls.iter().all(|c| !c.mutating && c.status == 200),
        "read-only, recorded calls"
    );
    assert!(calls.iter().any(|c| c.action == "DescribeSubnets"));
}

#[test]
fn a_three_az_scenario() {
    let s = Scenario::load(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/three-az.toml")).unwrap();
    let sb = common::sandbox_with(s);
    check_invariants(&sb);
    assert_eq!(sb.world().zones.len(), 3);
    let zones: BTreeSet<String> = sb.world().nodes.iter().map(|n| n.zone.clone()).collect();
    assert_eq!(zones.len(), 3);
    assert_eq!(list(&sb, NODE).len(), 7);
    let api = list(&sb, POD)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "api")
        .count();
    assert_eq!(api, 60);
}

#[test]
fn a_thousand_nodes_and_thirty_thousand_pods() {
    let s = Scenario::load(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/large.toml")).unwrap();
    let sb = Sandbox::start(SandboxOptions {
        scenario: s,
        moto: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(sb.store().count(NODE), 1000);
    assert_eq!(sb.store().count(POD), 30_004);
    let r = common::get(
        &sb,
        &format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            sb.world().nodes[10].name
        ),
    );
    assert_eq!(r.status, 200);
    let page = common::get(&sb, "/api/v1/pods?limit=500").json();
    assert_eq!(page["items"].as_array().unwrap().len(), 500);
    assert_eq!(page["metadata"]["remainingItemCount"], 29_504);
}
