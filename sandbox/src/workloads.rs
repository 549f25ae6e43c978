//! Building the objects workload controllers create — pods stamped from a
//! template for a node, ReplicaSet and pod names with template hashes — and
//! the DaemonSet rollout an addon update triggers. Seeding uses the same
//! builders, so seeded pods look like the ones controllers would make.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::kube::derived::controller_of;
use crate::kube::hash::SAFE;
pub use crate::kube::hash::template_hash;
use crate::kube::resources::{DAEMONSET, POD};
use crate::kube::{ApiError, DeleteOptions, Store, WriteOptions};

/// A deterministic 5-character name suffix from a seed (pods of seeded
/// workloads get stable names run after run).
pub fn suffix(seed: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..5)
        .map(|i| SAFE[((h >> (i * 7)) % SAFE.len() as u64) as usize] as char)
        .collect()
}

/// Who owns a pod.
#[derive(Debug, Clone)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn of(obj: &Value) -> Owner {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        Owner {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            name: s("/metadata/name"),
            uid: s("/metadata/uid"),
        }
    }

    pub fn reference(&self) -> Value {
        json!({
            "apiVersion": self.api_version, "kind": self.kind, "name": self.name,
            "uid": self.uid, "controller": true, "blockOwnerDeletion": true
        })
    }
}

/// Where a pod runs.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    pub node: &'a str,
    pub node_ip: Ipv4Addr,
    /// `None` for hostNetwork pods (they use the node IP).
    pub pod_ip: Option<Ipv4Addr>,
    pub created: &'a str,
}

/// A running pod created from a workload template on a node.
pub fn pod_from_template(
    template: &Value,
    owner: &Owner,
    name: &str,
    namespace: &str,
    extra_labels: &[(&str, String)],
    at: &Placement<'_>,
) -> Value {
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut meta = json!({
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
        "creationTimestamp": at.created,
    });
    if let Some(a) = template.pointer("/metadata/annotations") {
        meta["annotations"] = a.clone();
    }
    let spec = defaulted_spec(template, at.node);
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    let ip = if host_network {
        at.node_ip
    } else {
        at.pod_ip.unwrap_or(at.node_ip)
    };
    let (statuses, has_requests) = container_statuses(&spec, name, at.created);
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": at.created});
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": "Running",
            "conditions": [
                cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
                cond("ContainersReady"), cond("PodScheduled")
            ],
            "hostIP": at.node_ip.to_string(),
            "hostIPs": [{"ip": at.node_ip.to_string()}],
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "startTime": at.created,
            "qosClass": if has_requests { "Burstable" } else { "BestEffort" },
            "containerStatuses": statuses,
        }
    })
}

/// The template's spec on `node` with the defaults the apiserver fills in
/// (k8s.io/kubernetes `pkg/apis/core/v1/defaults.go`) and the not-ready and
/// unreachable tolerations the DefaultTolerationSeconds admission plugin
/// adds (<https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#defaulttolerationseconds>).
fn defaulted_spec(template: &Value, node: &str) -> Value {
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!(node);
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("serviceAccountName", json!("default")),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    let mut tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerations.iter().any(|t| {
            t.get("key").and_then(Value::as_str) == Some(key)
                || t.get("operator").and_then(Value::as_str) == Some("Exists") && t.get("key").is_none()
        }) {
            tolerations
                .push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = json!(tolerations);
    spec
}

/// Running container statuses, and whether any container requests
/// resources (which makes the pod Burstable rather than BestEffort).
fn container_statuses(spec: &Value, name: &str, created: &str) -> (Vec<Value>, bool) {
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_requests = containers.iter().any(|c| c.pointer("/resources/requests").is_some());
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let id = template_hash(&json!([name, cname]));
            json!({
                "name": cname,
                "image": image,
                "imageID": format!("{}@sha256:{}", image.split(':').next().unwrap_or(image), "0".repeat(64)),
                "containerID": format!("containerd://{}", format!("{id:0>64}")),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": created}},
            })
        })
        .collect();
    (statuses, has_requests)
}

/// Replace every pod of a DaemonSet whose `pod-template-generation` is not
/// the DaemonSet's current generation with one from the current template,
/// on the same node and with the same addresses: what the DaemonSet
/// controller's rolling update ends with. Returns the number replaced.
pub fn rollout_daemonset(store: &Store, namespace: &str, name: &str) -> Result<usize, ApiError> {
    let ds = store.get(DAEMONSET, namespace, name)?.value.clone();
    let generation = ds.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
    let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let owner = Owner::of(&ds);
    let pods: Vec<Value> = store
        .list(POD, Some(namespace), &Default::default())?
        .items
        .iter()
        .filter(|p| controller_of(&p.value).is_some_and(|(_, _, uid)| uid == owner.uid))
        .map(|p| p.value.clone())
        .collect();
    let now = crate::kube::ops::now_rfc3339();
    let mut replaced = 0;
    for pod in pods {
        let current = pod
            .pointer("/metadata/labels/pod-template-generation")
            .and_then(Value::as_str)
            == Some(generation.to_string().as_str());
        if current {
            continue;
        }
        let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let node = s("/spec/nodeName");
        let node_ip: Ipv4Addr = s("/status/hostIP").parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let pod_ip: Option<Ipv4Addr> = s("/status/podIP").parse().ok();
        let old_name = s("/metadata/name");
        store.delete(POD, namespace, &old_name, &DeleteOptions::default())?;
        let new_name = format!("{name}-{}", suffix(&format!("{old_name}/{generation}")));
        let p = pod_from_template(
            &template,
            &owner,
            &new_name,
            namespace,
            &[
                ("controller-revision-hash", hash.clone()),
                ("pod-template-generation", generation.to_string()),
            ],
            &Placement {
                node: &node,
                node_ip,
                pod_ip,
                created: &now,
            },
        );
        store.create(POD, namespace, p, &WriteOptions::internal())?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_stable_and_distinct() {
        assert_eq!(suffix("x").len(), 5);
        assert_ne!(suffix("x"), suffix("y"));
    }

    #[test]
    fn host_network_pods_use_the_node_ip() {
        let t = json!({"metadata": {"labels": {"k8s-app": "aws-node"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "aws-node", "image": "cni:1"}]}});
        let owner = Owner {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: "aws-node".into(),
            uid: "u".into(),
        };
        let p = pod_from_template(
            &t,
            &owner,
            "aws-node-abcde",
            "kube-system",
            &[],
            &Placement {
                node: "n1",
                node_ip: "10.0.0.5".parse().unwrap(),
                pod_ip: Some("10.0.0.9".parse().unwrap()),
                created: "2024-01-01T00:00:00Z",
            },
        );
        assert_eq!(p["status"]["podIP"], "10.0.0.5");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    }
}
