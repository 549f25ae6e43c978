//! A minimal OpenAPI v3 document set (`/openapi/v3` and one document per
//! group version) listing each resource's operations with their
//! `x-kubernetes-group-version-kind` and query parameters. It exists so
//! kubectl ≥ 1.27 finds server-side field validation supported and applies
//! manifests without `--validate=false`; it carries no schemas, so kubectl
//! falls back to its compiled-in types for strategic merge patches.
//! `/openapi/v2` (protobuf) is not served: kubectl 1.20 needs
//! `--validate=false` for `apply`.

use serde_json::{Map, Value, json};

use super::resources::{self, ResourceType};

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the group versions and where their documents are.
pub fn root(served: &dyn Fn(usize) -> bool) -> Value {
    let mut paths = Map::new();
    for (g, v) in resources::groups() {
        if !(0..resources::all().len()).any(|i| {
            let t = resources::get(i);
            t.group == g && t.version == v && served(i)
        }) {
            continue;
        }
        let key = gv_key(g, v);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", super::hash::template_hash(&json!([key, "v1"])).to_uppercase())}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn op(t: &ResourceType, action: &str, patch: bool) -> Value {
    let mut params = vec![param("dryRun"), param("fieldManager")];
    if matches!(action, "post" | "put" | "patch") {
        params.push(param("fieldValidation"));
    }
    if patch {
        params.push(param("force"));
    }
    let mut o = json!({
        "operationId": format!("{action}{}{}", t.group.replace('.', ""), t.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
    });
    if patch {
        let body = json!({"schema": {"type": "object"}});
        o["requestBody"] = json!({"content": {
            "application/json-patch+json": body,
            "application/merge-patch+json": body,
            "application/apply-patch+yaml": body,
        }});
    }
    o
}

/// The document of one group version, or `None` if nothing of it is served.
pub fn group_version(served: &dyn Fn(usize) -> bool, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for i in 0..resources::all().len() {
        let t = resources::get(i);
        if t.group != group || t.version != version || !served(i) {
            continue;
        }
        let prefix = format!("/{}", gv_key(group, version));
        let collection = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": op(t, "list", false), "post": op(t, "post", false)}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": op(t, "get", false),
                "put": op(t, "put", false),
                "patch": op(t, "patch", true),
                "delete": op(t, "delete", false),
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::discovery::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_patch_with_field_validation() {
        let all = |_: usize| true;
        let r = root(&all);
        assert!(
            r["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let d = group_version(&all, "crd.k8s.amazonaws.com", "v1alpha1").unwrap();
        let p = &d["paths"]["/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "ENIConfig");
        assert!(
            p["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "fieldValidation")
        );
        assert!(group_version(&all, "nope", "v1").is_none());
    }
}
