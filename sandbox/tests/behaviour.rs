//! The cluster's behaviours, driven the way an operator would drive a real
//! cluster: only kubectl and the AWS CLI act on the sandbox; the sandbox's
//! store and IP accounting are read to check what clients cannot see.
//!
//! - IP exhaustion (seed failure 1): scaling `example-service` to 600 leaves
//!   pods `ContainerCreating` with the VPC CNI's event, and no subnet ever
//!   hands out more addresses than it holds.
//! - A manual migration to custom networking, and Karpenter's max-pods lie
//!   without `RESERVED_ENIS` (seed failure 2), fixed with `RESERVED_ENIS=1`.
//! - A managed node group rolling update that keeps the PDBs.
//! - A missing ENIConfig keeping a new node NotReady until it appears.
//!
//! Time runs 90× faster than real time: every wait polls with a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Run, aws, kubectl};
use podnet_sandbox::Sandbox;
use podnet_sandbox::kube::ListOptions;
use podnet_sandbox::kube::derived::pod_ready;
use podnet_sandbox::kube::resources::{PDB, POD};
use serde_json::Value;

const CLUSTER: &str = "podnet-demo";
const IP_FAILURE: &str = "failed to assign an IP address to container";
const ENI_CONFIG_LABEL: &str = "vpc.amazonaws.com/eniConfig";

/// Poll `f` until it returns `Some`, at most `secs` real seconds on an
/// idle machine. The bound is a hang guard, never a timing assertion: CI
/// runs these sandboxes side by side on two cores, where a controller pass
/// takes several times longer, so every bound is tripled.
fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let secs = secs * 3;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ok(r: Run, what: &str) -> String {
    assert!(r.ok, "{what} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn json(r: Run, what: &str) -> Value {
    let out = ok(r, what);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out}"))
}

fn kj(sb: &Sandbox, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    json(kubectl(sb, &a), &format!("kubectl {}", args.join(" ")))
}

fn aj(sb: &Sandbox, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    json(aws(sb, &a), &format!("aws {}", args.join(" ")))
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn st<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn name(v: &Value) -> String {
    st(v, "/metadata/name").to_string()
}

fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["metadata"]["labels"].get(key).and_then(Value::as_str)
}

fn node_is_ready(n: &Value) -> bool {
    n["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn capacity_pods(n: &Value) -> u32 {
    st(n, "/status/capacity/pods").parse().unwrap_or(0)
}

fn waiting_reason(p: &Value) -> &str {
    st(p, "/status/containerStatuses/0/state/waiting/reason")
}

/// Pods stuck waiting for an address: bound, `ContainerCreating`, no IP.
fn stuck(pods: &[Value]) -> Vec<&Value> {
    pods.iter()
        .filter(|p| {
            !st(p, "/spec/nodeName").is_empty()
                && waiting_reason(p) == "ContainerCreating"
                && p.pointer("/status/podIP").is_none()
        })
        .collect()
}

fn karpenter_nodes(sb: &Sandbox) -> Vec<Value> {
    items(&kj(sb, &["get", "nodes", "-l", "karpenter.sh/nodepool"]))
}

const NODEGROUP: &str = "podnet-demo-system";

fn managed_nodes(sb: &Sandbox) -> Vec<Value> {
    items(&kj(
        sb,
        &[
            "get",
            "nodes",
            "-l",
            &format!("eks.amazonaws.com/nodegroup={NODEGROUP}"),
        ],
    ))
}

/// Polls `aws eks describe-update` of the seed's node group until the update
/// leaves InProgress; returns the last answer.
fn finished_update(sb: &Sandbox, id: &str, what: &str, secs: u64) -> Value {
    poll(what, secs, || {
        let d = aj(
            sb,
            &[
                "eks",
                "describe-update",
                "--name",
                CLUSTER,
                "--nodegroup-name",
                NODEGROUP,
                "--update-id",
                id,
            ],
        );
        (d["update"]["status"] != "InProgress").then_some(d)
    })
}

fn condition_is_true(v: &Value, kind: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|x| x["type"] == kind && x["status"] == "True"))
}

/// What the VPC CNI expects of a node's pods: a 100.64 address (pod
/// subnets) unless hostNetwork.
fn assert_pod_ips_in_pod_cidr(pods: &[&Value]) {
    let cgnat: ipnet::Ipv4Net = "100.64.0.0/16".parse().unwrap();
    for p in pods {
        if p.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let ip: Ipv4Addr = st(p, "/status/podIP")
            .parse()
            .unwrap_or_else(|_| panic!("{} has no pod IP: {}", name(p), p["status"]));
        assert!(cgnat.contains(&ip), "{} got {ip}, not a 100.64 address", name(p));
    }
}

/// The migration's network half, with the AWS CLI and kubectl only: the
/// secondary CIDR, one pod subnet per AZ, ENIConfigs named after the zones
/// (unless `eniconfigs` is false), and the vpc-cni update enabling custom
/// networking, waited on until ACTIVE. Returns the ENIConfig manifest file.
fn enable_custom_networking(sb: &Sandbox, eniconfigs: bool) -> std::path::PathBuf {
    let cluster = aj(sb, &["eks", "describe-cluster", "--name", CLUSTER]);
    let vpc = st(&cluster, "/cluster/resourcesVpcConfig/vpcId").to_string();
    let cluster_sg = st(&cluster, "/cluster/resourcesVpcConfig/clusterSecurityGroupId").to_string();
    assert!(vpc.starts_with("vpc-") && cluster_sg.starts_with("sg-"), "{cluster}");

    ok(
        aws(
            sb,
            &[
                "ec2",
                "associate-vpc-cidr-block",
                "--vpc-id",
                &vpc,
                "--cidr-block",
                "100.64.0.0/16",
            ],
        ),
        "associate-vpc-cidr-block",
    );
    poll("100.64.0.0/16 associated", 30, || {
        let v = aj(sb, &["ec2", "describe-vpcs", "--vpc-ids", &vpc]);
        v["Vpcs"][0]["CidrBlockAssociationSet"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["CidrBlock"] == "100.64.0.0/16" && a["CidrBlockState"]["State"] == "associated")
            .then_some(())
    });
    let mut subnets = BTreeMap::new();
    for (zone, cidr) in [
        ("ap-northeast-2a", "100.64.1.0/24"),
        ("ap-northeast-2c", "100.64.2.0/24"),
    ] {
        let v = aj(
            sb,
            &[
                "ec2",
                "create-subnet",
                "--vpc-id",
                &vpc,
                "--cidr-block",
                cidr,
                "--availability-zone",
                zone,
            ],
        );
        subnets.insert(zone, st(&v, "/Subnet/SubnetId").to_string());
    }

    let manifest: String = subnets
        .iter()
        .map(|(zone, subnet)| {
            format!(
                "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: {zone}\nspec:\n  subnet: {subnet}\n  securityGroups:\n  - {cluster_sg}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let file = sb.state_dir().join("eniconfigs.yaml");
    std::fs::write(&file, manifest).unwrap();
    if eniconfigs {
        apply_eniconfigs(sb, &file);
    }

    let v = aj(
        sb,
        &[
            "eks",
            "update-addon",
            "--cluster-name",
            CLUSTER,
            "--addon-name",
            "vpc-cni",
            "--configuration-values",
            r#"{"env":{"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true","ENI_CONFIG_LABEL_DEF":"topology.kubernetes.io/zone","WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4"}}"#,
        ],
    );
    assert_eq!(v["update"]["status"], "InProgress", "{v}");
    poll("vpc-cni ACTIVE", 30, || {
        let v = aj(
            sb,
            &[
                "eks",
                "describe-addon",
                "--cluster-name",
                CLUSTER,
                "--addon-name",
                "vpc-cni",
            ],
        );
        (v["addon"]["status"] == "ACTIVE").then_some(())
    });
    // The update rolled aws-node with the new env.
    let ds = kj(sb, &["-n", "kube-system", "get", "ds", "aws-node"]);
    let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        env.iter()
            .any(|e| e["name"] == "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" && e["value"] == "true"),
        "{env:?}"
    );
    file
}

fn apply_eniconfigs(sb: &Sandbox, file: &std::path::Path) {
    let out = ok(
        kubectl(sb, &["apply", "--validate=false", "-f", file.to_str().unwrap()]),
        "kubectl apply ENIConfigs",
    );
    assert!(
        out.contains("eniconfig.crd.k8s.amazonaws.com/ap-northeast-2a created")
            && out.contains("eniconfig.crd.k8s.amazonaws.com/ap-northeast-2c created"),
        "{out}"
    );
}

/// Addresses moto holds per subnet, over every ENI in the VPC.
fn moto_addresses_per_subnet(sb: &Sandbox) -> BTreeMap<String, usize> {
    let v = aj(
        sb,
        &[
            "ec2",
            "describe-network-interfaces",
            "--filters",
            &format!("Name=vpc-id,Values={}", sb.world().vpc_id),
        ],
    );
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for eni in v["NetworkInterfaces"].as_array().unwrap() {
        let n = eni["PrivateIpAddresses"].as_array().map_or(0, Vec::len);
        *per.entry(st(eni, "/SubnetId").to_string()).or_default() += n;
    }
    per
}

#[test]
fn scaling_out_exhausts_the_node_subnets() {
    let sb = common::sandbox();
    let private: Vec<String> = sb.world().zones.iter().map(|z| z.private_subnet.clone()).collect();
    let out = ok(
        kubectl(&sb, &["scale", "deploy", "example-service", "--replicas=600"]),
        "kubectl scale",
    );
    assert!(out.contains("deployment.apps/example-service scaled"), "{out}");

    // Pods bound to a node the CNI cannot give an address: ContainerCreating,
    // with the kubelet's event.
    let (stuck_pods, events) = poll("pods stuck on IP assignment", 60, || {
        // The sandbox's accounting never goes past a subnet, at any moment.
        for p in sb.ipam().lock().unwrap().subnets() {
            assert!(p.free() <= p.usable(), "{}: {} free of {}", p.id, p.free(), p.usable());
        }
        let pods = items(&kj(&sb, &["get", "pods", "-n", "default"]));
        let s: Vec<String> = stuck(&pods).iter().map(|p| name(p)).collect();
        let ev = items(&kj(
            &sb,
            &[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "reason=FailedCreatePodSandBox",
            ],
        ));
        (s.len() >= 5 && !ev.is_empty()).then_some((s, ev))
    });
    for e in &events {
        assert_eq!(e["type"], "Warning", "{e}");
        assert_eq!(e["involvedObject"]["kind"], "Pod", "{e}");
        assert_eq!(e["source"]["component"], "kubelet", "{e}");
        let msg = st(e, "/message");
        assert!(msg.contains(IP_FAILURE), "{msg}");
        assert!(msg.contains(r#"plugin type="aws-cni""#), "{msg}");
    }
    let with_event: BTreeSet<&str> = events.iter().map(|e| st(e, "/involvedObject/name")).collect();
    assert!(
        stuck_pods.iter().any(|p| with_event.contains(p.as_str())),
        "stuck pods {stuck_pods:?} have no FailedCreatePodSandBox event ({with_event:?})"
    );
    // kubectl shows them as ContainerCreating on a node.
    let wide = ok(
        kubectl(&sb, &["get", "pods", "-n", "default", "-o", "wide"]),
        "kubectl get pods",
    );
    let row = wide
        .lines()
        .find(|l| l.starts_with(stuck_pods[0].as_str()))
        .unwrap_or_else(|| panic!("{} not listed:\n{wide}", stuck_pods[0]));
    assert!(
        row.contains("ContainerCreating") && row.contains("ip-10-255-1"),
        "{row}"
    );

    // Seed failure 1: a node subnet is used up, in the sandbox's accounting
    // and in moto's, and neither ever went past the /24's 251 usable
    // addresses.
    let ipam_free: BTreeMap<String, u32> = {
        let ipam = sb.ipam().lock().unwrap();
        private
            .iter()
            .map(|id| {
                let p = ipam.subnet(id).expect("private subnet known");
                assert_eq!(p.usable(), 251);
                (id.clone(), p.free())
            })
            .collect()
    };
    assert!(
        ipam_free.values().any(|f| *f == 0),
        "no node subnet exhausted: {ipam_free:?}"
    );
    let moto = moto_addresses_per_subnet(&sb);
    for id in &private {
        let held = moto.get(id).copied().unwrap_or(0);
        assert!(held <= 251, "moto holds {held} addresses in {id}");
    }
    let subnets = aj(
        &sb,
        &["ec2", "describe-subnets", "--subnet-ids", &private[0], &private[1]],
    );
    for s in subnets["Subnets"].as_array().unwrap() {
        let id = st(s, "/SubnetId");
        let avail = s["AvailableIpAddressCount"].as_i64().unwrap();
        assert!((0..=251).contains(&avail), "{id}: {avail}");
        assert_eq!(
            avail,
            i64::from(ipam_free[id]),
            "moto and the sandbox disagree on {id}'s free addresses"
        );
    }

    // The rest stay Pending: the scheduler finds no room, and Karpenter is at
    // the NodePool's 10-CPU limit — both say so, in events of their own.
    poll("FailedScheduling from the scheduler and from Karpenter", 30, || {
        let ev = items(&kj(
            &sb,
            &[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "reason=FailedScheduling",
            ],
        ));
        let by = |component: &str, text: &str| {
            ev.iter()
                .any(|e| st(e, "/source/component") == component && st(e, "/message").contains(text))
        };
        (by("default-scheduler", "nodes are available")
            && by("karpenter", "all available instance types exceed limits for nodepool"))
        .then_some(())
    });

    // Every running pod still has its own address (hostNetwork pods share
    // their node's).
    let pods = items(&kj(&sb, &["get", "pods", "-A"]));
    let mut seen = BTreeSet::new();
    for p in &pods {
        let ip = st(p, "/status/podIP");
        if ip.is_empty() || p.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        assert!(seen.insert(ip.to_string()), "{ip} handed out twice ({})", name(p));
    }
    let running = pods.iter().filter(|p| st(p, "/status/phase") == "Running").count();
    assert!(
        running < 600,
        "{running} pods running: the subnets cannot hold that many"
    );
}

#[test]
fn manual_migration_and_reserved_enis() {
    let sb = common::sandbox();
    let seeded: BTreeSet<String> = karpenter_nodes(&sb).iter().map(name).collect();
    assert_eq!(seeded.len(), 4);
    let eniconfigs = enable_custom_networking(&sb, true);
    drop(eniconfigs);
    // Existing nodes keep their mode: none got the ENIConfig label.
    for n in items(&kj(&sb, &["get", "nodes"])) {
        assert_eq!(label(&n, ENI_CONFIG_LABEL), None, "{}", name(&n));
    }

    // Replace one node. The old Karpenter nodes are cordoned first (as a
    // migration does before replacing them), so the evicted pods can only
    // go to the replacement and fill it to its max pods.
    ok(
        kubectl(&sb, &["cordon", "-l", "karpenter.sh/nodepool"]),
        "kubectl cordon",
    );
    let claims = items(&kj(&sb, &["get", "nodeclaims"]));
    let victim = claims
        .iter()
        .find(|c| label(c, "node.kubernetes.io/instance-type") == Some("t3.medium"))
        .expect("a t3.medium NodeClaim");
    let out = ok(
        kubectl(&sb, &["delete", "nodeclaim", &name(victim), "--wait=false"]),
        "kubectl delete nodeclaim",
    );
    assert!(out.contains("deleted"), "{out}");

    // Without RESERVED_ENIS, Karpenter promises the node its default max
    // pods, but the CNI can only give pods the secondary ENIs' addresses.
    let (first, stuck_here) = poll("a replacement node with pods stuck on IP assignment", 60, || {
        let node = karpenter_nodes(&sb)
            .into_iter()
            .find(|n| !seeded.contains(&name(n)) && node_is_ready(n))?;
        let pods = items(&kj(
            &sb,
            &[
                "get",
                "pods",
                "-A",
                "--field-selector",
                &format!("spec.nodeName={}", name(&node)),
            ],
        ));
        let s: Vec<Value> = stuck(&pods).into_iter().cloned().collect();
        (!s.is_empty()).then_some((node, s))
    });
    let first_name = name(&first);
    let itype = label(&first, "node.kubernetes.io/instance-type").unwrap().to_string();
    let zone = label(&first, "topology.kubernetes.io/zone").unwrap().to_string();
    assert_eq!(label(&first, ENI_CONFIG_LABEL), Some(zone.as_str()), "{first_name}");
    let (promised, pod_ips) = match itype.as_str() {
        "t3.medium" => (17, 10),
        "t3.large" => (35, 22),
        other => panic!("unexpected instance type {other}"),
    };
    assert_eq!(capacity_pods(&first), promised, "{first_name} ({itype})");
    let pods = items(&kj(
        &sb,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={first_name}"),
        ],
    ));
    let running: Vec<&Value> = pods.iter().filter(|p| st(p, "/status/phase") == "Running").collect();
    assert_pod_ips_in_pod_cidr(&running);
    let pod_ip_count = running
        .iter()
        .filter(|p| p.pointer("/spec/hostNetwork").and_then(Value::as_bool) != Some(true))
        .count();
    assert!(pod_ip_count <= pod_ips, "{pod_ip_count} pod IPs on a {itype}");
    let ev = items(&kj(
        &sb,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=FailedCreatePodSandBox",
        ],
    ));
    for p in &stuck_here {
        assert!(
            ev.iter().any(|e| e["involvedObject"]["name"] == p["metadata"]["name"]
                && st(e, "/message").contains(IP_FAILURE)
                && st(e, "/source/host") == first_name),
            "no IP-assignment event for {}",
            name(p)
        );
    }

    // Fix Karpenter: RESERVED_ENIS=1 on its controller, rolled out.
    let out = ok(
        kubectl(
            &sb,
            &["-n", "kube-system", "set", "env", "deploy/karpenter", "RESERVED_ENIS=1"],
        ),
        "kubectl set env",
    );
    assert!(out.contains("env updated"), "{out}");
    ok(
        kubectl(
            &sb,
            &[
                "-n",
                "kube-system",
                "rollout",
                "status",
                "deploy/karpenter",
                "--timeout=60s",
            ],
        ),
        "kubectl rollout status deploy/karpenter",
    );

    // Replace the nodes still without custom networking.
    let before: BTreeSet<String> = karpenter_nodes(&sb).iter().map(name).collect();
    let old_claims: Vec<String> = items(&kj(&sb, &["get", "nodeclaims"]))
        .iter()
        .filter(|c| {
            let node = st(c, "/status/nodeName");
            karpenter_nodes(&sb)
                .iter()
                .any(|n| name(n) == node && label(n, ENI_CONFIG_LABEL).is_none())
        })
        .map(name)
        .collect();
    assert_eq!(old_claims.len(), 3, "{old_claims:?}");
    let mut args = vec!["delete", "nodeclaim"];
    args.extend(old_claims.iter().map(String::as_str));
    args.push("--wait=false");
    ok(kubectl(&sb, &args), "kubectl delete nodeclaims");

    // Settled: the old claims gone, every new node Ready with its pods
    // Running — twice in a row, 90 simulated seconds apart.
    let settled = |sb: &Sandbox| -> Option<Vec<Value>> {
        let claims: BTreeSet<String> = items(&kj(sb, &["get", "nodeclaims"])).iter().map(name).collect();
        if old_claims.iter().any(|c| claims.contains(c)) {
            return None;
        }
        let new: Vec<Value> = karpenter_nodes(sb)
            .into_iter()
            .filter(|n| !before.contains(&name(n)))
            .collect();
        if new.is_empty() || !new.iter().all(node_is_ready) {
            return None;
        }
        for n in &new {
            let pods = items(&kj(
                sb,
                &[
                    "get",
                    "pods",
                    "-A",
                    "--field-selector",
                    &format!("spec.nodeName={}", name(n)),
                ],
            ));
            if pods.iter().any(|p| st(p, "/status/phase") != "Running") {
                return None;
            }
        }
        Some(new)
    };
    poll("the old NodeClaims replaced", 90, || settled(&sb));
    std::thread::sleep(Duration::from_secs(1));
    let new = poll("the new nodes settled", 30, || settled(&sb));

    let ev = items(&kj(
        &sb,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=FailedCreatePodSandBox",
        ],
    ));
    let mut hosted = 0;
    for n in &new {
        let nn = name(n);
        let itype = label(n, "node.kubernetes.io/instance-type").unwrap();
        let zone = label(n, "topology.kubernetes.io/zone").unwrap();
        assert_eq!(label(n, ENI_CONFIG_LABEL), Some(zone), "{nn}");
        let want = match itype {
            "t3.medium" => 12,
            "t3.large" => 24,
            other => panic!("unexpected instance type {other}"),
        };
        assert_eq!(capacity_pods(n), want, "{nn} ({itype}) with RESERVED_ENIS=1");
        let pods = items(&kj(
            &sb,
            &["get", "pods", "-A", "--field-selector", &format!("spec.nodeName={nn}")],
        ));
        assert!(stuck(&pods).is_empty(), "pods stuck on {nn}");
        let refs: Vec<&Value> = pods.iter().collect();
        assert_pod_ips_in_pod_cidr(&refs);
        hosted += pods.len();
        let failures: Vec<&Value> = ev.iter().filter(|e| st(e, "/source/host") == nn).collect();
        assert!(failures.is_empty(), "IP-assignment failures on {nn}: {failures:?}");
    }
    assert!(hosted > 2 * new.len(), "the new nodes host workload pods");
    // The node from before RESERVED_ENIS keeps its stuck pods: nothing
    // rescues them but replacing that node too.
    let pods = items(&kj(
        &sb,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={first_name}"),
        ],
    ));
    assert!(!stuck(&pods).is_empty());
}

/// What the rollout watcher saw.
#[derive(Debug, Default)]
struct Watch {
    samples: usize,
    min_karpenter_ready: usize,
    min_coredns_ready: usize,
    /// (pdb, currentHealthy, desiredHealthy) whenever healthy < desired.
    pdb_breaches: Vec<(String, i64, i64)>,
    negative_allowed: Vec<(String, i64)>,
}

fn watch_availability(sb: &Sandbox, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Watch> {
    let store = sb.store().clone();
    std::thread::spawn(move || {
        let mut w = Watch {
            min_karpenter_ready: usize::MAX,
            min_coredns_ready: usize::MAX,
            ..Default::default()
        };
        while !stop.load(Ordering::SeqCst) {
            let pods = store
                .dyn_api(POD)
                .list(Some("kube-system"), &ListOptions::default())
                .unwrap();
            let ready = |app: &str, key: &str| {
                pods.iter()
                    .filter(|p| {
                        label(p, key) == Some(app) && pod_ready(p) && p["metadata"]["deletionTimestamp"].is_null()
                    })
                    .count()
            };
            w.min_karpenter_ready = w.min_karpenter_ready.min(ready("karpenter", "app.kubernetes.io/name"));
            w.min_coredns_ready = w.min_coredns_ready.min(ready("kube-dns", "k8s-app"));
            for pdb in store
                .dyn_api(PDB)
                .list(Some("kube-system"), &ListOptions::default())
                .unwrap()
            {
                let n = |k: &str| pdb["status"][k].as_i64().unwrap_or(0);
                if n("currentHealthy") < n("desiredHealthy") {
                    w.pdb_breaches
                        .push((name(&pdb), n("currentHealthy"), n("desiredHealthy")));
                }
                if n("disruptionsAllowed") < 0 {
                    w.negative_allowed.push((name(&pdb), n("disruptionsAllowed")));
                }
            }
            w.samples += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        w
    })
}

#[test]
fn managed_node_group_update_keeps_the_pdbs() {
    let sb = common::sandbox();
    let old: BTreeSet<String> = managed_nodes(&sb).iter().map(name).collect();
    assert_eq!(old.len(), 2);
    // The karpenter and coredns pods live on the managed nodes.
    let system = items(&kj(&sb, &["-n", "kube-system", "get", "pods"]));
    for app in ["karpenter-", "coredns-"] {
        assert!(
            system
                .iter()
                .filter(|p| name(p).starts_with(app))
                .all(|p| old.contains(st(p, "/spec/nodeName"))),
            "{app} pods off the managed nodes"
        );
    }
    enable_custom_networking(&sb, true);

    let ng = aj(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            CLUSTER,
            "--nodegroup-name",
            NODEGROUP,
        ],
    );
    let lt_id = st(&ng, "/nodegroup/launchTemplate/id").to_string();
    let lt_version = st(&ng, "/nodegroup/launchTemplate/version").to_string();
    assert!(lt_id.starts_with("lt-"), "{ng}");

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_availability(&sb, stop.clone());
    let v = aj(
        &sb,
        &[
            "eks",
            "update-nodegroup-version",
            "--cluster-name",
            CLUSTER,
            "--nodegroup-name",
            NODEGROUP,
            "--launch-template",
            &format!("id={lt_id},version={lt_version}"),
        ],
    );
    let update = st(&v, "/update/id").to_string();
    assert_eq!(v["update"]["status"], "InProgress", "{v}");
    let done = finished_update(&sb, &update, "the node group update to finish", 90);
    stop.store(true, Ordering::SeqCst);
    let w = watcher.join().unwrap();
    assert_eq!(done["update"]["status"], "Successful", "{done}");
    assert_eq!(done["update"]["errors"], serde_json::json!([]), "{done}");

    // Both nodes replaced: new names, Ready, and launched after custom
    // networking was enabled, so EKS's max pods leave the primary ENI out.
    let now = managed_nodes(&sb);
    assert_eq!(now.len(), 2, "{:?}", now.iter().map(name).collect::<Vec<_>>());
    for n in &now {
        let nn = name(n);
        assert!(!old.contains(&nn), "{nn} was not replaced");
        assert!(node_is_ready(n), "{nn} not Ready");
        assert_eq!(capacity_pods(n), 12, "{nn}");
        assert_eq!(
            label(n, ENI_CONFIG_LABEL),
            label(n, "topology.kubernetes.io/zone"),
            "{nn}"
        );
    }
    let all_nodes: BTreeSet<String> = items(&kj(&sb, &["get", "nodes"])).iter().map(name).collect();
    assert!(old.iter().all(|o| !all_nodes.contains(o)), "old nodes still registered");
    // The group is back to its size and ACTIVE.
    let ng = aj(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            CLUSTER,
            "--nodegroup-name",
            NODEGROUP,
        ],
    );
    assert_eq!(ng["nodegroup"]["status"], "ACTIVE", "{ng}");
    assert_eq!(ng["nodegroup"]["scalingConfig"]["desiredSize"], 2, "{ng}");
    assert_eq!(
        ng["nodegroup"]["launchTemplate"]["version"],
        lt_version.as_str(),
        "{ng}"
    );

    // Availability held throughout.
    assert!(w.samples > 10, "the watcher hardly ran: {w:?}");
    assert!(
        w.min_karpenter_ready >= 1,
        "no karpenter pod ready at some point: {w:?}"
    );
    assert!(w.min_coredns_ready >= 1, "no coredns pod ready at some point: {w:?}");
    assert!(w.pdb_breaches.is_empty(), "PDB breached: {w:?}");
    assert!(w.negative_allowed.is_empty(), "{w:?}");
    // Both are whole again. The Karpenter controller (node affinity to the
    // managed nodes) is on the new nodes with pod-subnet addresses; CoreDNS
    // may have gone to any node with room.
    let system = items(&kj(&sb, &["-n", "kube-system", "get", "pods"]));
    let new: BTreeSet<String> = now.iter().map(name).collect();
    for app in ["karpenter-", "coredns-"] {
        let pods: Vec<&Value> = system.iter().filter(|p| name(p).starts_with(app)).collect();
        assert_eq!(pods.len(), 2, "{app}");
        for p in &pods {
            assert!(pod_ready(p), "{} not ready", name(p));
            assert!(
                !old.contains(st(p, "/spec/nodeName")),
                "{} still on an old node",
                name(p)
            );
        }
        if app == "karpenter-" {
            for p in &pods {
                assert!(
                    new.contains(st(p, "/spec/nodeName")),
                    "{} on {}",
                    name(p),
                    st(p, "/spec/nodeName")
                );
            }
            assert_pod_ips_in_pod_cidr(&pods);
        }
    }
}

#[test]
fn a_missing_eniconfig_keeps_the_node_not_ready() {
    let sb = common::sandbox();
    let seeded: BTreeSet<String> = karpenter_nodes(&sb).iter().map(name).collect();
    let eniconfigs = enable_custom_networking(&sb, false);
    let r = kubectl(&sb, &["get", "eniconfigs"]);
    assert!(r.stderr.contains("No resources found"), "{} {}", r.stdout, r.stderr);

    let claims = items(&kj(&sb, &["get", "nodeclaims"]));
    let victim = claims
        .iter()
        .find(|c| label(c, "node.kubernetes.io/instance-type") == Some("t3.medium"))
        .expect("a t3.medium NodeClaim");
    ok(
        kubectl(&sb, &["delete", "nodeclaim", &name(victim), "--wait=false"]),
        "kubectl delete nodeclaim",
    );

    // The replacement registers, but aws-node finds no ENIConfig for it.
    let node = poll("the replacement node to register", 60, || {
        karpenter_nodes(&sb)
            .into_iter()
            .map(|n| name(&n))
            .find(|n| !seeded.contains(n))
    });
    let aws_node = |sb: &Sandbox| -> Option<Value> {
        items(&kj(
            sb,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "k8s-app=aws-node",
                "--field-selector",
                &format!("spec.nodeName={node}"),
            ],
        ))
        .into_iter()
        .next()
    };
    poll("aws-node crash-looping", 30, || {
        aws_node(&sb).filter(|p| waiting_reason(p) == "CrashLoopBackOff")
    });
    let status_of = |sb: &Sandbox| -> String {
        let out = ok(kubectl(sb, &["get", "node", &node, "--no-headers"]), "kubectl get node");
        out.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    // It stays that way: a few simulated minutes later it is still NotReady.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(status_of(&sb), "NotReady", "{node} became Ready without an ENIConfig");
        let p = aws_node(&sb).expect("aws-node pod on the node");
        assert_eq!(waiting_reason(&p), "CrashLoopBackOff", "{}", p["status"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let wide = ok(
        kubectl(
            &sb,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-o",
                "wide",
                "--field-selector",
                &format!("spec.nodeName={node}"),
            ],
        ),
        "kubectl get pods",
    );
    assert!(
        wide.lines()
            .any(|l| l.starts_with("aws-node-") && l.contains("CrashLoopBackOff")),
        "{wide}"
    );
    let n = kj(&sb, &["get", "node", &node]);
    assert_eq!(label(&n, ENI_CONFIG_LABEL), None);
    let ready = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False", "{ready}");
    assert!(st(&ready, "/message").contains("cni plugin not initialized"), "{ready}");
    // Why, in aws-node's back-off event: the ENIConfig named after the zone.
    let zone = label(&n, "topology.kubernetes.io/zone").unwrap().to_string();
    let p = aws_node(&sb).unwrap();
    let ev = items(&kj(
        &sb,
        &[
            "-n",
            "kube-system",
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={},reason=BackOff", name(&p)),
        ],
    ));
    assert!(
        ev.iter().any(
            |e| st(e, "/message").contains(&format!("ENIConfig {zone}")) && st(e, "/message").contains("not found")
        ),
        "{ev:?}"
    );
    // Nothing but DaemonSet pods is started there.
    let pods = items(&kj(
        &sb,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={node}"),
        ],
    ));
    assert!(
        pods.iter()
            .all(|p| st(p, "/metadata/ownerReferences/0/kind") == "DaemonSet"),
        "{:?}",
        pods.iter().map(name).collect::<Vec<_>>()
    );

    // The ENIConfigs appear: aws-node starts and the node comes up with
    // custom networking.
    apply_eniconfigs(&sb, &eniconfigs);
    poll("the node to become Ready", 30, || {
        (status_of(&sb) == "Ready").then_some(())
    });
    let n = kj(&sb, &["get", "node", &node]);
    assert_eq!(label(&n, ENI_CONFIG_LABEL), label(&n, "topology.kubernetes.io/zone"));
    let p = poll("aws-node Running", 30, || aws_node(&sb).filter(pod_ready));
    assert_eq!(st(&p, "/status/phase"), "Running");
    // Pods now land there and get pod-subnet addresses.
    let running = poll("workload pods running on the node", 30, || {
        let pods = items(&kj(
            &sb,
            &[
                "get",
                "pods",
                "-n",
                "default",
                "--field-selector",
                &format!("spec.nodeName={node}"),
            ],
        ));
        let r: Vec<Value> = pods
            .into_iter()
            .filter(|p| st(p, "/status/phase") == "Running")
            .collect();
        (!r.is_empty()).then_some(r)
    });
    assert_pod_ips_in_pod_cidr(&running.iter().collect::<Vec<_>>());
}

/// Drift: a changed EC2NodeClass marks every NodeClaim drifted; Karpenter
/// replaces them within the NodePool's budget (`nodes: 10%` of 4 → one at a
/// time), each replacement Ready before its drifted node is deleted.
#[test]
fn drift_replaces_nodeclaims_within_the_budget() {
    let sb = common::sandbox();
    let seeded: BTreeSet<String> = items(&kj(&sb, &["get", "nodeclaims"])).iter().map(name).collect();
    assert_eq!(seeded.len(), 4);
    // The seeded NodeClaims record the seeded EC2NodeClass: no drift yet.
    let class_hash = st(
        &kj(&sb, &["get", "ec2nodeclass", "default"]),
        "/metadata/annotations/karpenter.k8s.aws~1ec2nodeclass-hash",
    )
    .to_string();
    assert!(!class_hash.is_empty());
    for c in items(&kj(&sb, &["get", "nodeclaims"])) {
        assert_eq!(
            st(&c, "/metadata/annotations/karpenter.k8s.aws~1ec2nodeclass-hash"),
            class_hash,
            "{} records another EC2NodeClass",
            name(&c)
        );
        assert!(
            !condition_is_true(&c, "Drifted"),
            "{} drifted before any change",
            name(&c)
        );
    }
    ok(
        kubectl(
            &sb,
            &[
                "patch",
                "ec2nodeclass",
                "default",
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"tags":{"karpenter.sh/discovery":"podnet-demo","team":"platform"}}}"#,
            ],
        ),
        "kubectl patch ec2nodeclass",
    );
    poll("every seeded NodeClaim marked Drifted", 10, || {
        items(&kj(&sb, &["get", "nodeclaims"]))
            .iter()
            .filter(|c| seeded.contains(&name(c)))
            .all(|c| condition_is_true(c, "Drifted"))
            .then_some(())
    });
    // Until every seeded NodeClaim is gone: never more than one disrupted at
    // once, and never a seeded node deleted before its replacement is Ready.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let claims = items(&kj(&sb, &["get", "nodeclaims"]));
        let left: Vec<&Value> = claims.iter().filter(|c| seeded.contains(&name(c))).collect();
        if left.is_empty() {
            break;
        }
        let disrupting = left
            .iter()
            .filter(|c| {
                c["metadata"]["deletionTimestamp"].is_string()
                    || c["metadata"]["annotations"]["sandbox.podnet.io/drift-replacement"].is_string()
            })
            .count();
        assert!(
            disrupting <= 1,
            "{disrupting} drifted NodeClaims disrupted at once (budget 1)"
        );
        for c in left.iter().filter(|c| c["metadata"]["deletionTimestamp"].is_string()) {
            let r = st(c, "/metadata/annotations/sandbox.podnet.io~1drift-replacement");
            let replacement = claims.iter().find(|x| name(x) == r).expect("the replacement NodeClaim");
            let node = st(replacement, "/status/nodeName");
            let n = kj(&sb, &["get", "node", node]);
            assert!(
                node_is_ready(&n),
                "{} deleted before its replacement {node} was Ready",
                name(c)
            );
        }
        assert!(Instant::now() < deadline, "drifted NodeClaims still there: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Four new nodes, Ready, and nothing left pending.
    poll("four Ready replacement nodes and no pending pod", 60, || {
        let nodes = karpenter_nodes(&sb);
        let pods = items(&kj(&sb, &["get", "pods", "-A"]));
        (nodes.len() == 4
            && nodes.iter().all(node_is_ready)
            && pods.iter().all(|p| st(p, "/status/phase") == "Running"))
        .then_some(())
    });
}

/// The managed node group's Auto Scaling group follows `desiredSize`: a
/// third node launches in the least-used zone, and scaling back drains one
/// through its PDBs and terminates it in moto.
#[test]
fn node_group_desired_size_scales_out_and_in() {
    let sb = common::sandbox();
    let seeded: BTreeSet<String> = managed_nodes(&sb).iter().map(name).collect();
    assert_eq!(seeded.len(), 2);
    let scale = |desired: u32| {
        let v = aj(
            &sb,
            &[
                "eks",
                "update-nodegroup-config",
                "--cluster-name",
                CLUSTER,
                "--nodegroup-name",
                NODEGROUP,
                "--scaling-config",
                &format!("minSize=2,maxSize=3,desiredSize={desired}"),
            ],
        );
        let id = st(&v, "/update/id").to_string();
        let d = finished_update(&sb, &id, "the config update to finish", 30);
        assert_eq!(d["update"]["status"], "Successful", "{d}");
    };
    scale(3);
    let third = poll("a third Ready managed node", 30, || {
        let nodes = managed_nodes(&sb);
        (nodes.len() == 3 && nodes.iter().all(node_is_ready))
            .then(|| nodes.into_iter().find(|n| !seeded.contains(&name(n))))
            .flatten()
    });
    let instance = st(&third, "/spec/providerID")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let running = |sb: &Sandbox| -> String {
        let v = aj(sb, &["ec2", "describe-instances", "--instance-ids", &instance]);
        st(&v, "/Reservations/0/Instances/0/State/Name").to_string()
    };
    assert_eq!(running(&sb), "running");

    scale(2);
    poll("back to two managed nodes", 30, || {
        (managed_nodes(&sb).len() == 2).then_some(())
    });
    // The newest went, through the eviction API; its instance is terminated.
    assert!(managed_nodes(&sb).iter().all(|n| name(n) != name(&third)));
    poll("the scaled-in instance terminated", 10, || {
        (running(&sb) == "terminated").then_some(())
    });
    poll("no pod left pending", 30, || {
        items(&kj(&sb, &["get", "pods", "-A"]))
            .iter()
            .all(|p| st(p, "/status/phase") == "Running")
            .then_some(())
    });
}
