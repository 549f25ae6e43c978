//! The apiserver's printers, kind by kind: the columns `kubectl get` shows
//! for each built-in kind (`-o wide`'s extra ones at priority 1) and how an
//! object fills them, and the CRDs' `additionalPrinterColumns` for custom
//! resources.

use serde_json::{Value, json};

use super::cells::{age, age_of, col, containers_images, i, json_path, or_none, s, selector_str};
use super::resources::{Printer, ResourceType};
use super::store::meta_str;

/// Turns an object into its row's cells.
pub(super) type CellsOf = Box<dyn Fn(&Value) -> Vec<Value>>;

/// Column definitions of a kind, and what turns one of its objects into
/// its row's cells.
pub(super) fn printer(rt: &ResourceType, crd: Option<&Value>) -> (Vec<Value>, CellsOf) {
    let mut columns = vec![col("Name", "string", 0)];
    let cells_of = match rt.printer {
        Printer::Pod => pod_printer(&mut columns),
        Printer::Node => node_printer(&mut columns),
        Printer::Namespace => namespace_printer(&mut columns),
        Printer::Service => service_printer(&mut columns),
        Printer::ConfigMap => configmap_printer(&mut columns),
        Printer::Event => event_printer(&mut columns),
        Printer::Deployment => deployment_printer(&mut columns),
        Printer::DaemonSet => daemonset_printer(&mut columns),
        Printer::ReplicaSet => replicaset_printer(&mut columns),
        Printer::Pdb => pdb_printer(&mut columns),
        Printer::Lease => lease_printer(&mut columns),
        Printer::Crd => crd_printer(&mut columns),
        Printer::Webhooks => webhooks_printer(&mut columns),
        Printer::ApiService => apiservice_printer(&mut columns),
        Printer::Custom => custom_printer(rt, crd, &mut columns),
    };
    (columns, cells_of)
}

/// Pods: READY/STATUS/RESTARTS/AGE, and IP/NODE with `-o wide`.
fn pod_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Ready", "string", 0),
        col("Status", "string", 0),
        col("Restarts", "integer", 0),
        col("Age", "string", 0),
        col("IP", "string", 1),
        col("Node", "string", 1),
        col("Nominated Node", "string", 1),
        col("Readiness Gates", "string", 1),
    ]);
    Box::new(pod_cells)
}

/// Nodes: STATUS/ROLES/AGE/VERSION, and addresses and OS with `-o wide`.
fn node_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Status", "string", 0),
        col("Roles", "string", 0),
        col("Age", "string", 0),
        col("Version", "string", 0),
        col("Internal-IP", "string", 1),
        col("External-IP", "string", 1),
        col("OS-Image", "string", 1),
        col("Kernel-Version", "string", 1),
        col("Container-Runtime", "string", 1),
    ]);
    Box::new(node_cells)
}

/// Namespaces: STATUS/AGE.
fn namespace_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([col("Status", "string", 0), col("Age", "string", 0)]);
    Box::new(|v| vec![json!(meta_str(v, "name")), json!(s(v, "/status/phase")), json!(age(v))])
}

/// Services: TYPE/CLUSTER-IP/EXTERNAL-IP/PORT(S)/AGE.
fn service_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Type", "string", 0),
        col("Cluster-IP", "string", 0),
        col("External-IP", "string", 0),
        col("Port(s)", "string", 0),
        col("Age", "string", 0),
        col("Selector", "string", 1),
    ]);
    Box::new(|v| {
        let ports: Vec<String> = v
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.get("port").and_then(Value::as_i64).unwrap_or(0),
                            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sel = v
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        vec![
            json!(meta_str(v, "name")),
            json!(s(v, "/spec/type")),
            or_none(s(v, "/spec/clusterIP")),
            json!("<none>"),
            or_none(&ports.join(",")),
            json!(age(v)),
            or_none(&sel),
        ]
    })
}

/// ConfigMaps: DATA/AGE.
fn configmap_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([col("Data", "integer", 0), col("Age", "string", 0)]);
    Box::new(|v| {
        let n = v.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
            + v.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
        vec![json!(meta_str(v, "name")), json!(n), json!(age(v))]
    })
}

/// Events: LAST SEEN/TYPE/REASON/OBJECT/MESSAGE, the name only with
/// `-o wide`.
fn event_printer(columns: &mut Vec<Value>) -> CellsOf {
    *columns = vec![
        col("Last Seen", "string", 0),
        col("Type", "string", 0),
        col("Reason", "string", 0),
        col("Object", "string", 0),
        col("Subobject", "string", 1),
        col("Source", "string", 1),
        col("Message", "string", 0),
        col("First Seen", "string", 1),
        col("Count", "string", 1),
        col("Name", "string", 1),
    ];
    Box::new(|v| {
        let last = ["/lastTimestamp", "/eventTime", "/metadata/creationTimestamp"]
            .iter()
            .map(|p| s(v, p))
            .find(|x| !x.is_empty())
            .unwrap_or("");
        let first = s(v, "/firstTimestamp");
        vec![
            json!(age_of(last)),
            json!(s(v, "/type")),
            json!(s(v, "/reason")),
            json!(format!(
                "{}/{}",
                s(v, "/involvedObject/kind").to_lowercase(),
                s(v, "/involvedObject/name")
            )),
            json!(s(v, "/involvedObject/fieldPath")),
            json!(s(v, "/source/component")),
            json!(s(v, "/message")),
            json!(if first.is_empty() {
                "<unknown>".to_string()
            } else {
                age_of(first)
            }),
            json!(i(v, "/count").max(1).to_string()),
            json!(meta_str(v, "name")),
        ]
    })
}

/// Deployments: READY/UP-TO-DATE/AVAILABLE/AGE.
fn deployment_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Ready", "string", 0),
        col("Up-to-date", "integer", 0),
        col("Available", "integer", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ]);
    Box::new(|v| {
        let (c, im) = containers_images(v.pointer("/spec/template/spec").unwrap_or(&Value::Null));
        vec![
            json!(meta_str(v, "name")),
            json!(format!(
                "{}/{}",
                i(v, "/status/readyReplicas"),
                v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
            )),
            json!(i(v, "/status/updatedReplicas")),
            json!(i(v, "/status/availableReplicas")),
            json!(age(v)),
            json!(c),
            json!(im),
            selector_str(v.pointer("/spec/selector")),
        ]
    })
}

/// DaemonSets: DESIRED/CURRENT/READY/UP-TO-DATE/AVAILABLE/NODE SELECTOR/AGE.
fn daemonset_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Desired", "integer", 0),
        col("Current", "integer", 0),
        col("Ready", "integer", 0),
        col("Up-to-date", "integer", 0),
        col("Available", "integer", 0),
        col("Node Selector", "string", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ]);
    Box::new(|v| {
        let spec = v.pointer("/spec/template/spec").unwrap_or(&Value::Null);
        let (c, im) = containers_images(spec);
        let ns = spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        vec![
            json!(meta_str(v, "name")),
            json!(i(v, "/status/desiredNumberScheduled")),
            json!(i(v, "/status/currentNumberScheduled")),
            json!(i(v, "/status/numberReady")),
            json!(i(v, "/status/updatedNumberScheduled")),
            json!(i(v, "/status/numberAvailable")),
            or_none(&ns),
            json!(age(v)),
            json!(c),
            json!(im),
            selector_str(v.pointer("/spec/selector")),
        ]
    })
}

/// ReplicaSets: DESIRED/CURRENT/READY/AGE.
fn replicaset_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Desired", "integer", 0),
        col("Current", "integer", 0),
        col("Ready", "integer", 0),
        col("Age", "string", 0),
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ]);
    Box::new(|v| {
        let (c, im) = containers_images(v.pointer("/spec/template/spec").unwrap_or(&Value::Null));
        vec![
            json!(meta_str(v, "name")),
            json!(v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)),
            json!(i(v, "/status/replicas")),
            json!(i(v, "/status/readyReplicas")),
            json!(age(v)),
            json!(c),
            json!(im),
            selector_str(v.pointer("/spec/selector")),
        ]
    })
}

/// PodDisruptionBudgets: MIN AVAILABLE/MAX UNAVAILABLE/ALLOWED DISRUPTIONS/AGE.
fn pdb_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Min Available", "string", 0),
        col("Max Unavailable", "string", 0),
        col("Allowed Disruptions", "integer", 0),
        col("Age", "string", 0),
    ]);
    Box::new(|v| {
        let show = |p: &str| match v.pointer(p) {
            Some(Value::Number(n)) => json!(n.to_string()),
            Some(Value::String(x)) => json!(x),
            _ => json!("N/A"),
        };
        vec![
            json!(meta_str(v, "name")),
            show("/spec/minAvailable"),
            show("/spec/maxUnavailable"),
            json!(i(v, "/status/disruptionsAllowed")),
            json!(age(v)),
        ]
    })
}

/// Leases: HOLDER/AGE.
fn lease_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([col("Holder", "string", 0), col("Age", "string", 0)]);
    Box::new(|v| {
        vec![
            json!(meta_str(v, "name")),
            json!(s(v, "/spec/holderIdentity")),
            json!(age(v)),
        ]
    })
}

/// CustomResourceDefinitions: CREATED AT.
fn crd_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.push(col("Created At", "date", 0));
    Box::new(|v| vec![json!(meta_str(v, "name")), json!(meta_str(v, "creationTimestamp"))])
}

/// Webhook configurations: WEBHOOKS (how many), AGE.
fn webhooks_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([col("Webhooks", "integer", 0), col("Age", "string", 0)]);
    Box::new(|v| {
        let n = v.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len);
        vec![json!(meta_str(v, "name")), json!(n), json!(age(v))]
    })
}

/// APIServices: SERVICE (`ns/name` or `Local`), AVAILABLE (`True`, or
/// `False (Reason)` as kube-aggregator prints it), AGE.
fn apiservice_printer(columns: &mut Vec<Value>) -> CellsOf {
    columns.extend([
        col("Service", "string", 0),
        col("Available", "string", 0),
        col("Age", "string", 0),
    ]);
    Box::new(|v| {
        let service = match v.pointer("/spec/service") {
            Some(svc) if !svc.is_null() => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
            _ => "Local".to_string(),
        };
        let available = v
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Available"))
            .map_or("Unknown".to_string(), |c| match s(c, "/status") {
                "True" => "True".to_string(),
                other => format!("{other} ({})", s(c, "/reason")),
            });
        vec![
            json!(meta_str(v, "name")),
            json!(service),
            json!(available),
            json!(age(v)),
        ]
    })
}

/// Custom resources: the CRD version's `additionalPrinterColumns`, else AGE.
fn custom_printer(rt: &ResourceType, crd: Option<&Value>, columns: &mut Vec<Value>) -> CellsOf {
    let extra: Vec<Value> = crd
        .and_then(|c| c.pointer("/spec/versions"))
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(rt.version))
        })
        .and_then(|x| x.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if extra.is_empty() {
        columns.push(col("Age", "date", 0));
        Box::new(|v| vec![json!(meta_str(v, "name")), json!(age(v))])
    } else {
        for c in &extra {
            let mut d = col(
                c.get("name").and_then(Value::as_str).unwrap_or(""),
                c.get("type").and_then(Value::as_str).unwrap_or("string"),
                c.get("priority").and_then(Value::as_u64).unwrap_or(0) as u8,
            );
            if let Some(desc) = c.get("description") {
                d["description"] = desc.clone();
            }
            columns.push(d);
        }
        Box::new(move |v| {
            let mut cells = vec![json!(meta_str(v, "name"))];
            for c in &extra {
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
                let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
                let cell = match json_path(v, path) {
                    Some(Value::String(x)) if ty == "date" => json!(age_of(x)),
                    Some(x) => x.clone(),
                    None => Value::Null,
                };
                cells.push(cell);
            }
            cells
        })
    }
}

fn pod_cells(v: &Value) -> Vec<Value> {
    let total = v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
        .sum();
    let mut reason = s(v, "/status/reason").to_string();
    if reason.is_empty() {
        reason = s(v, "/status/phase").to_string();
    }
    for c in &statuses {
        if let Some(w) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
            && !w.is_empty()
        {
            reason = w.to_string();
        }
    }
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    vec![
        json!(meta_str(v, "name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(age(v)),
        or_none(s(v, "/status/podIP")),
        or_none(s(v, "/spec/nodeName")),
        or_none(s(v, "/status/nominatedNodeName")),
        json!("<none>"),
    ]
}

fn node_cells(v: &Value) -> Vec<Value> {
    let conds = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("Unknown");
    let mut status = match ready {
        "True" => "Ready".to_string(),
        "False" => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = v
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, val)| {
                    if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                        Some(r.to_string())
                    } else if k == "kubernetes.io/role" {
                        val.as_str().map(str::to_string)
                    } else {
                        None
                    }
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let addr = |t: &str| {
        v.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|x| x.get("type").and_then(Value::as_str) == Some(t))
                    .and_then(|x| x.get("address").and_then(Value::as_str))
            })
            .unwrap_or("")
            .to_string()
    };
    vec![
        json!(meta_str(v, "name")),
        json!(status),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(v)),
        json!(s(v, "/status/nodeInfo/kubeletVersion")),
        or_none(&addr("InternalIP")),
        or_none(&addr("ExternalIP")),
        or_none(s(v, "/status/nodeInfo/osImage")),
        or_none(s(v, "/status/nodeInfo/kernelVersion")),
        or_none(s(v, "/status/nodeInfo/containerRuntimeVersion")),
    ]
}
