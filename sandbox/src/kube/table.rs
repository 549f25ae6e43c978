//! `meta.k8s.io/v1` Table responses, so `kubectl get` prints the columns it
//! prints against a real cluster (NAME/STATUS/ROLES/AGE/VERSION for nodes,
//! READY/STATUS/RESTARTS/AGE and `-o wide`'s IP/NODE for pods, …), using the
//! apiserver printers' column names and cell formats, and the CRDs'
//! `additionalPrinterColumns` for custom resources.

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::{Printer, ResourceType};
use super::selectors::LabelSelector;
use super::store::{Stored, meta_str};

/// What `includeObject` asked for in each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// `duration.HumanDuration` of apimachinery.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn age(v: &Value) -> String {
    age_of(meta_str(v, "creationTimestamp"))
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(x: &str) -> Value {
    if x.is_empty() { json!("<none>") } else { json!(x) }
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": "", "description": "", "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
        c["description"] = json!("Name must be unique within a namespace. Is required when creating resources.");
    }
    c
}

fn containers_images(spec: &Value) -> (String, String) {
    let cs = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.get("image").and_then(Value::as_str))
        .collect();
    (names.join(","), images.join(","))
}

fn selector_str(v: Option<&Value>) -> Value {
    match v.and_then(|s| LabelSelector::from_json(s).ok()) {
        Some(sel) if !sel.is_empty() => json!(sel.to_string_form()),
        _ => json!("<none>"),
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

/// Evaluate the subset of JSONPath used by printer columns:
/// `.a.b`, escaped dots (`node\.kubernetes\.io/x`), `[N]` and
/// `[?(@.type=="Ready")]`.
pub fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut segs: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = path.trim_start_matches('.').chars().peekable();
    let mut in_bracket = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if !in_bracket => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '.' if !in_bracket => segs.push(std::mem::take(&mut cur)),
            '[' => {
                if !cur.is_empty() {
                    segs.push(std::mem::take(&mut cur));
                }
                in_bracket = true;
                cur.push('[');
            }
            ']' => {
                cur.push(']');
                in_bracket = false;
                segs.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    let mut node = v;
    for seg in segs.iter().filter(|s| !s.is_empty()) {
        if let Some(inner) = seg.strip_prefix("[?(@.").and_then(|x| x.strip_suffix(")]")) {
            let (field, want) = inner.split_once("==")?;
            let want = want.trim().trim_matches('"').trim_matches('\'');
            node = node
                .as_array()?
                .iter()
                .find(|e| e.get(field.trim()).and_then(Value::as_str) == Some(want))?;
        } else if let Some(idx) = seg.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            node = node.as_array()?.get(idx.parse::<usize>().ok()?)?;
        } else {
            node = node.get(seg.as_str())?;
        }
    }
    Some(node)
}

/// Turns an object into its row's cells.
type CellsOf = Box<dyn Fn(&Value) -> Vec<Value>>;

/// Column definitions and row cells of one object.
pub fn columns_and_cells(
    rt: &ResourceType,
    crd: Option<&Value>,
    objs: &[Arc<Stored>],
) -> (Vec<Value>, Vec<Vec<Value>>) {
    let mut columns = vec![col("Name", "string", 0)];
    let cells_of: CellsOf = match rt.printer {
        Printer::Pod => {
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
        Printer::Node => {
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
        Printer::Namespace => {
            columns.extend([col("Status", "string", 0), col("Age", "string", 0)]);
            Box::new(|v| vec![json!(meta_str(v, "name")), json!(s(v, "/status/phase")), json!(age(v))])
        }
        Printer::Service => {
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
        Printer::ConfigMap => {
            columns.extend([col("Data", "integer", 0), col("Age", "string", 0)]);
            Box::new(|v| {
                let n = v.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
                    + v.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
                vec![json!(meta_str(v, "name")), json!(n), json!(age(v))]
            })
        }
        Printer::Event => {
            columns = vec![
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
        Printer::Deployment => {
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
        Printer::DaemonSet => {
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
        Printer::ReplicaSet => {
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
        Printer::Pdb => {
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
        Printer::Lease => {
            columns.extend([col("Holder", "string", 0), col("Age", "string", 0)]);
            Box::new(|v| {
                vec![
                    json!(meta_str(v, "name")),
                    json!(s(v, "/spec/holderIdentity")),
                    json!(age(v)),
                ]
            })
        }
        Printer::Crd => {
            columns.push(col("Created At", "date", 0));
            Box::new(|v| vec![json!(meta_str(v, "name")), json!(meta_str(v, "creationTimestamp"))])
        }
        Printer::Custom => {
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
    };
    let rows = objs.iter().map(|o| cells_of(&o.value)).collect();
    (columns, rows)
}

/// Build the Table for a list or a single object.
pub fn table(
    rt: &ResourceType,
    crd: Option<&Value>,
    objs: &[Arc<Stored>],
    list_meta: Value,
    include: IncludeObject,
    table_version: &str,
) -> Value {
    let (columns, rows) = columns_and_cells(rt, crd, objs);
    let rows: Vec<Value> = objs
        .iter()
        .zip(rows)
        .map(|(o, cells)| {
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let mut meta = o.value.get("metadata").cloned().unwrap_or(json!({}));
                    if let Some(m) = meta.as_object_mut() {
                        m.remove("managedFields");
                    }
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": format!("meta.k8s.io/{table_version}"),
                        "metadata": meta,
                    });
                }
                IncludeObject::Object => row["object"] = o.value.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{table_version}"),
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }

    #[test]
    fn printer_json_path() {
        let v = json!({"metadata": {"labels": {"node.kubernetes.io/instance-type": "t3.large"}},
            "status": {"conditions": [{"type": "Launched", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        assert_eq!(
            json_path(&v, r".metadata.labels.node\.kubernetes\.io/instance-type"),
            Some(&json!("t3.large"))
        );
        assert_eq!(
            json_path(&v, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("False"))
        );
        assert_eq!(json_path(&v, ".status.conditions[0].type"), Some(&json!("Launched")));
        assert_eq!(json_path(&v, ".spec.missing"), None);
    }
}
