//! The four patch flavours the apiserver accepts, applied to JSON objects:
//! JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! for the built-in list fields clients rely on (containers, env and volumes
//! by name, conditions by type, finalizers as a set, …), and server-side
//! apply with `managedFields`/`fieldsV1` bookkeeping so that a manager's
//! second apply removes the fields it stopped specifying.
//!
//! Strategic merge needs per-field list semantics that the apiserver reads
//! from Go struct tags; here they come from a small table keyed by field name
//! and position, which covers the built-in kinds the sandbox serves.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Items are objects identified by this key (`patchMergeKey`).
    Merge(&'static str),
    /// Primitive items merged as a set (`patchStrategy: merge` on []string).
    Set,
    /// The whole list is replaced.
    Atomic,
}

/// The list strategy of field `field` inside the object reached by `path`
/// (field names only, no indices). `builtin` is false for custom resources,
/// whose lists are atomic apart from the standard metadata ones.
pub fn list_strategy(builtin: bool, path: &[String], field: &str) -> ListStrategy {
    let parent = path.last().map(String::as_str);
    if parent == Some("metadata") {
        return match field {
            "finalizers" => ListStrategy::Set,
            "ownerReferences" => ListStrategy::Merge("uid"),
            _ => ListStrategy::Atomic,
        };
    }
    if !builtin {
        return ListStrategy::Atomic;
    }
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::Merge("name"),
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => ListStrategy::Merge("name"),
        "volumeMounts" => ListStrategy::Merge("mountPath"),
        "volumeDevices" => ListStrategy::Merge("devicePath"),
        "hostAliases" => ListStrategy::Merge("ip"),
        "topologySpreadConstraints" => ListStrategy::Merge("topologyKey"),
        "conditions" => ListStrategy::Merge("type"),
        "addresses" if parent == Some("status") => ListStrategy::Merge("type"),
        "ports" => match parent {
            Some("containers" | "initContainers" | "ephemeralContainers") => ListStrategy::Merge("containerPort"),
            Some("spec") if path.len() == 1 => ListStrategy::Merge("port"),
            _ => ListStrategy::Atomic,
        },
        _ => ListStrategy::Atomic,
    }
}

/// Patch failures, mapped to Status errors by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Invalid(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(doc, &ops).map_err(|e| PatchError::Invalid(e.to_string()))
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Invalid("merge patch must be a JSON object".to_string()));
    }
    json_patch::merge(doc, patch);
    Ok(())
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Strategic merge patch of `patch` onto `doc`.
pub fn strategic_merge(doc: &mut Value, patch: &Value, builtin: bool) -> Result<(), PatchError> {
    let Some(pm) = patch.as_object() else {
        return Err(PatchError::Invalid(
            "strategic merge patch must be a JSON object".to_string(),
        ));
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    if let Value::Object(m) = doc {
        smp_map(m, pm, builtin, &mut path)?;
    }
    Ok(())
}

fn smp_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    builtin: bool,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            if let Value::Object(m) = strip_directives(&Value::Object(patch.clone())) {
                *orig = m;
            }
            return Ok(());
        }
        Some("delete") => {
            orig.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Invalid(format!("unknown patch type: {other} in map")));
        }
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Some(a) = pv.as_array() {
                orders.push((field.to_string(), a.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (orig.get_mut(field), pv.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match pv {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pobj) => {
                if pobj.get("$patch").and_then(Value::as_str) == Some("delete") {
                    orig.remove(k);
                    continue;
                }
                match orig.get_mut(k) {
                    Some(Value::Object(o)) => {
                        path.push(k.clone());
                        let r = smp_map(o, pobj, builtin, path);
                        path.pop();
                        r?;
                    }
                    _ => {
                        orig.insert(k.clone(), strip_directives(pv));
                    }
                }
            }
            Value::Array(items) => {
                let strategy = list_strategy(builtin, path, k);
                let cur = orig.remove(k);
                let merged = match (strategy, cur) {
                    (ListStrategy::Merge(key), Some(Value::Array(mut list))) => {
                        path.push(k.clone());
                        let r = smp_list(&mut list, items, key, builtin, path);
                        path.pop();
                        r?;
                        Value::Array(list)
                    }
                    (ListStrategy::Set, Some(Value::Array(mut list))) => {
                        for it in items {
                            if !list.contains(it) {
                                list.push(it.clone());
                            }
                        }
                        Value::Array(list)
                    }
                    _ => strip_directives(pv),
                };
                orig.insert(k.clone(), merged);
            }
            scalar => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
    }
    retain_keys(orig, patch);
    for (field, order) in orders {
        let strategy = list_strategy(builtin, path, &field);
        if let (Some(Value::Array(list)), ListStrategy::Merge(key)) = (orig.get_mut(&field), strategy) {
            reorder(list, &order, key);
        }
    }
    Ok(())
}

fn retain_keys(orig: &mut Map<String, Value>, patch: &Map<String, Value>) {
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn reorder(list: &mut [Value], order: &[Value], key: &str) {
    let pos = |item: &Value| {
        order
            .iter()
            .position(|o| o.get(key).is_some() && o.get(key) == item.get(key))
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(pos);
}

fn smp_list(
    orig: &mut Vec<Value>,
    patch: &[Value],
    key: &str,
    builtin: bool,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *orig = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return Ok(());
    }
    for item in patch {
        let Some(pobj) = item.as_object() else {
            if !orig.contains(item) {
                orig.push(item.clone());
            }
            continue;
        };
        let Some(kv) = pobj.get(key) else {
            return Err(PatchError::Invalid(format!(
                "map: {pobj:?} does not contain declared merge key: {key}"
            )));
        };
        let existing = orig.iter().position(|o| o.get(key) == Some(kv));
        if pobj.get("$patch").and_then(Value::as_str) == Some("delete") {
            orig.retain(|o| o.get(key) != Some(kv));
            continue;
        }
        match existing {
            Some(i) => {
                if let Value::Object(o) = &mut orig[i] {
                    smp_map(o, pobj, builtin, path)?;
                }
            }
            None => orig.push(strip_directives(item)),
        }
    }
    Ok(())
}

/// Merge an applied configuration onto the live object the way server-side
/// apply does for the applying manager: maps merge field by field,
/// associative lists by key, set lists by value, everything else is replaced.
pub fn apply_merge(live: &mut Value, applied: &Value, builtin: bool) {
    let mut path = Vec::new();
    apply_value(live, applied, builtin, &mut path);
}

fn apply_value(live: &mut Value, applied: &Value, builtin: bool, path: &mut Vec<String>) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    continue;
                }
                match (l.get_mut(k), av) {
                    (Some(lv @ Value::Object(_)), Value::Object(_)) => {
                        path.push(k.clone());
                        apply_value(lv, av, builtin, path);
                        path.pop();
                    }
                    (Some(Value::Array(list)), Value::Array(items)) => match list_strategy(builtin, path, k) {
                        ListStrategy::Merge(key) => {
                            path.push(k.clone());
                            for it in items {
                                let kv = it.get(key);
                                match list.iter_mut().find(|o| kv.is_some() && o.get(key) == kv) {
                                    Some(o) => apply_value(o, it, builtin, path),
                                    None => list.push(it.clone()),
                                }
                            }
                            path.pop();
                        }
                        ListStrategy::Set => {
                            for it in items {
                                if !list.contains(it) {
                                    list.push(it.clone());
                                }
                            }
                        }
                        ListStrategy::Atomic => *list = items.clone(),
                    },
                    _ => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Metadata fields that field management tracks; the rest is system-owned.
const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The `fieldsV1` set of an applied configuration.
pub fn field_set(applied: &Value, builtin: bool) -> Value {
    let mut path = Vec::new();
    match applied {
        Value::Object(m) => Value::Object(fields_of_map(m, builtin, &mut path, true)),
        _ => Value::Object(Map::new()),
    }
}

fn fields_of_map(m: &Map<String, Value>, builtin: bool, path: &mut Vec<String>, top: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in m {
        if v.is_null() || (top && (k == "apiVersion" || k == "kind")) {
            continue;
        }
        if path.len() == 1 && path[0] == "metadata" && !TRACKED_METADATA.contains(&k.as_str()) {
            continue;
        }
        let child = match v {
            Value::Object(o) => {
                path.push(k.clone());
                let mut c = fields_of_map(o, builtin, path, false);
                path.pop();
                if matches!(k.as_str(), "labels" | "annotations") && !c.is_empty() {
                    c.insert(".".to_string(), Value::Object(Map::new()));
                }
                c
            }
            Value::Array(items) => match list_strategy(builtin, path, k) {
                ListStrategy::Merge(key) => {
                    path.push(k.clone());
                    let mut c = Map::new();
                    for it in items {
                        let (Some(obj), Some(kv)) = (it.as_object(), it.get(key)) else {
                            continue;
                        };
                        let mut keymap = Map::new();
                        keymap.insert(key.to_string(), kv.clone());
                        let mut ic = fields_of_map(obj, builtin, path, false);
                        ic.insert(".".to_string(), Value::Object(Map::new()));
                        c.insert(format!("k:{}", Value::Object(keymap)), Value::Object(ic));
                    }
                    path.pop();
                    c
                }
                ListStrategy::Set => {
                    let mut c = Map::new();
                    for it in items {
                        c.insert(format!("v:{it}"), Value::Object(Map::new()));
                    }
                    c
                }
                ListStrategy::Atomic => Map::new(),
            },
            _ => Map::new(),
        };
        out.insert(format!("f:{k}"), Value::Object(child));
    }
    out
}

/// Remove from `obj` the fields present in `prev` (a manager's previous
/// field set) but absent from `next` (its new one).
pub fn remove_dropped_fields(obj: &mut Value, prev: &Value, next: &Value) {
    let empty = Map::new();
    let (Some(p), n) = (prev.as_object(), next.as_object().unwrap_or(&empty)) else {
        return;
    };
    if let Value::Object(o) = obj {
        prune_map(o, p, n);
    }
}

fn owned_children(m: &Map<String, Value>) -> bool {
    m.keys().any(|k| k != ".")
}

fn prune_map(obj: &mut Map<String, Value>, prev: &Map<String, Value>, next: &Map<String, Value>) {
    let empty = Map::new();
    for (pk, pchild) in prev {
        let Some(field) = pk.strip_prefix("f:") else {
            continue;
        };
        let pchild = pchild.as_object().unwrap_or(&empty);
        let Some(nchild) = next.get(pk).map(|v| v.as_object().unwrap_or(&empty)) else {
            obj.remove(field);
            continue;
        };
        if !owned_children(pchild) {
            continue;
        }
        match obj.get_mut(field) {
            Some(Value::Object(o)) => prune_map(o, pchild, nchild),
            Some(Value::Array(list)) => prune_list(list, pchild, nchild),
            _ => {}
        }
    }
}

fn prune_list(list: &mut Vec<Value>, prev: &Map<String, Value>, next: &Map<String, Value>) {
    let empty = Map::new();
    for (pk, pchild) in prev {
        if let Some(keyjson) = pk.strip_prefix("k:") {
            let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keyjson) else {
                continue;
            };
            let matches = |item: &Value| keys.iter().all(|(k, v)| item.get(k) == Some(v));
            match next.get(pk) {
                None => list.retain(|i| !matches(i)),
                Some(nchild) => {
                    let nchild = nchild.as_object().unwrap_or(&empty);
                    let pchild = pchild.as_object().unwrap_or(&empty);
                    for item in list.iter_mut().filter(|i| matches(i)) {
                        if let Value::Object(o) = item {
                            prune_map(o, pchild, nchild);
                        }
                    }
                }
            }
        } else if let Some(valjson) = pk.strip_prefix("v:")
            && !next.contains_key(pk)
            && let Ok(v) = serde_json::from_str::<Value>(valjson)
        {
            list.retain(|i| *i != v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smp_cordon_and_uncordon() {
        let mut node = json!({"spec": {"providerID": "aws:///x/i-1"}});
        strategic_merge(&mut node, &json!({"spec": {"unschedulable": true}}), true).unwrap();
        assert_eq!(node["spec"]["unschedulable"], true);
        strategic_merge(&mut node, &json!({"spec": {"unschedulable": null}}), true).unwrap();
        assert!(node["spec"].get("unschedulable").is_none());
        assert_eq!(node["spec"]["providerID"], "aws:///x/i-1");
    }

    #[test]
    fn smp_env_by_name() {
        let mut ds = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "aws-node", "image": "cni:1", "env": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "s:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "aws-node", "env": [
                {"name": "B", "value": "two"}, {"name": "C", "value": "3"},
                {"name": "A", "$patch": "delete"}]}
        ]}}}});
        strategic_merge(&mut ds, &patch, true).unwrap();
        let c = &ds["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["image"], "cni:1");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
    }

    #[test]
    fn smp_atomic_lists_and_replace_directive() {
        let mut p = json!({"spec": {"tolerations": [{"key": "a"}], "x": {"y": 1, "z": 2}}});
        strategic_merge(
            &mut p,
            &json!({"spec": {"tolerations": [{"key": "b"}], "x": {"$patch": "replace", "q": 3}}}),
            true,
        )
        .unwrap();
        assert_eq!(p["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(p["spec"]["x"], json!({"q": 3}));
    }

    #[test]
    fn smp_finalizers_set_and_delete_from_primitive_list() {
        let mut o = json!({"metadata": {"finalizers": ["a", "b"]}});
        strategic_merge(&mut o, &json!({"metadata": {"finalizers": ["b", "c"]}}), false).unwrap();
        assert_eq!(o["metadata"]["finalizers"], json!(["a", "b", "c"]));
        strategic_merge(
            &mut o,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            false,
        )
        .unwrap();
        assert_eq!(o["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn smp_set_element_order() {
        let mut o = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        strategic_merge(
            &mut o,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            true,
        )
        .unwrap();
        assert_eq!(o["spec"]["containers"], json!([{"name": "b"}, {"name": "a"}]));
    }

    #[test]
    fn merge_and_json_patch() {
        let mut o = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut o, &json!({"a": {"b": null, "d": 4}, "l": [3]})).unwrap();
        assert_eq!(o, json!({"a": {"c": 2, "d": 4}, "l": [3]}));
        json_patch(
            &mut o,
            &json!([{"op": "replace", "path": "/a/c", "value": 9}, {"op": "add", "path": "/l/-", "value": 5}]),
        )
        .unwrap();
        assert_eq!(o, json!({"a": {"c": 9, "d": 4}, "l": [3, 5]}));
        assert!(json_patch(&mut o, &json!([{"op": "test", "path": "/a/c", "value": 1}])).is_err());
        assert!(json_patch(&mut o, &json!({"op": "bogus"})).is_err());
    }

    #[test]
    fn apply_twice_removes_dropped_fields_only() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}},
            "data": {"k1": "v1", "k2": "v2"}});
        let mut live = first.clone();
        let set1 = field_set(&first, true);
        assert_eq!(
            set1,
            json!({"f:data": {"f:k1": {}, "f:k2": {}},
                   "f:metadata": {"f:labels": {".": {}, "f:a": {}, "f:b": {}}}})
        );
        // someone else adds a field the manager never owned
        live["data"]["other"] = json!("kept");
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1"}},
            "data": {"k1": "new"}});
        apply_merge(&mut live, &second, true);
        let set2 = field_set(&second, true);
        remove_dropped_fields(&mut live, &set1, &set2);
        assert_eq!(live["data"], json!({"k1": "new", "other": "kept"}));
        assert_eq!(live["metadata"]["labels"], json!({"a": "1"}));
    }

    #[test]
    fn apply_associative_lists() {
        let mut live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}});
        let prev = field_set(&live, true);
        let applied = json!({"spec": {"containers": [
            {"name": "a", "image": "a:2"}]}});
        apply_merge(&mut live, &applied, true);
        remove_dropped_fields(&mut live, &prev, &field_set(&applied, true));
        assert_eq!(live, json!({"spec": {"containers": [{"name": "a", "image": "a:2"}]}}));
    }
}
