//! `meta.k8s.io/v1` Table responses, so `kubectl get` prints the columns it
//! prints against a real cluster (NAME/STATUS/ROLES/AGE/VERSION for nodes,
//! READY/STATUS/RESTARTS/AGE and `-o wide`'s IP/NODE for pods, …), using the
//! apiserver printers' column names and cell formats, and the CRDs'
//! `additionalPrinterColumns` for custom resources.

use std::sync::Arc;

use serde_json::{Value, json};

pub use super::cells::{human_duration, json_path};
use super::printers;
use super::resources::ResourceType;
use super::store::Stored;

/// What `includeObject` asked for in each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// Column definitions and row cells of one object.
pub fn columns_and_cells(
    rt: &ResourceType,
    crd: Option<&Value>,
    objs: &[Arc<Stored>],
) -> (Vec<Value>, Vec<Vec<Value>>) {
    let (columns, cells_of) = printers::printer(rt, crd);
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
