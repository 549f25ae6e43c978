//! API discovery documents: `/version`, the legacy `/api`, `/apis`,
//! `/apis/<group>` and resource lists, and the aggregated
//! `apidiscovery.k8s.io/v2` form that kubectl ≥ 1.26 and kube-rs's
//! `run_aggregated` ask for. Subresources (`pods/eviction`,
//! `deployments/scale`, `*/status`) are listed as the apiserver lists them.

use serde_json::{Value, json};

use super::resources::{self, ResourceType, Subresource};

pub const KUBE_GIT_VERSION: &str = "v1.31.4-eks-2d5f260";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "31",
        "gitVersion": KUBE_GIT_VERSION,
        "gitCommit": "b19ef4ce7e0fdc5f95fd4b9ac6a7d7d4e2a1a6a1",
        "gitTreeState": "clean",
        "buildDate": "2024-12-12T21:34:13Z",
        "goVersion": "go1.22.9",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `(group, kind)` of a subresource's request/response object.
fn sub_kind(rt: &ResourceType, s: Subresource) -> (&'static str, &'static str, &'static str) {
    match s {
        Subresource::Status => (rt.group, rt.version, rt.kind),
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Eviction => ("policy", "v1", "Eviction"),
    }
}

fn sub_verbs(s: Subresource) -> &'static [&'static str] {
    match s {
        Subresource::Eviction => &["create"],
        _ => &["get", "patch", "update"],
    }
}

fn served_types(served: &dyn Fn(usize) -> bool, group: &str, version: &str) -> Vec<usize> {
    (0..resources::all().len())
        .filter(|i| {
            let t = resources::get(*i);
            t.group == group && t.version == version && served(*i)
        })
        .collect()
}

/// `/api/v1` or `/apis/<g>/<v>`: an APIResourceList.
pub fn resource_list(served: &dyn Fn(usize) -> bool, group: &str, version: &str) -> Option<Value> {
    let types = served_types(served, group, version);
    if types.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for i in types {
        let t = resources::get(i);
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": resources::verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        out.push(r);
        for s in t.subresources {
            let (g, v, k) = sub_kind(t, *s);
            let mut r = json!({
                "name": format!("{}/{}", t.plural, s.name()),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": k,
                "verbs": sub_verbs(*s),
            });
            if *s != Subresource::Status {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            out.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": out,
    }))
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_doc(name: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

fn served_groups(served: &dyn Fn(usize) -> bool) -> Vec<(&'static str, &'static str)> {
    resources::groups()
        .into_iter()
        .filter(|(g, v)| !g.is_empty() && !served_types(served, g, v).is_empty())
        .collect()
}

/// `/apis`: an APIGroupList.
pub fn group_list(served: &dyn Fn(usize) -> bool) -> Value {
    let groups: Vec<Value> = served_groups(served)
        .into_iter()
        .map(|(g, v)| group_doc(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: an APIGroup.
pub fn group(served: &dyn Fn(usize) -> bool, name: &str) -> Option<Value> {
    let (g, v) = served_groups(served).into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn aggregated_group(served: &dyn Fn(usize) -> bool, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = served_types(served, group, version)
        .into_iter()
        .map(|i| {
            let t = resources::get(i);
            let mut r = json!({
                "resource": t.plural,
                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": t.singular,
                "verbs": resources::verbs(),
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            let subs: Vec<Value> = t
                .subresources
                .iter()
                .map(|s| {
                    let (g, v, k) = sub_kind(t, *s);
                    json!({
                        "subresource": s.name(),
                        "responseKind": {"group": g, "version": v, "kind": k},
                        "verbs": sub_verbs(*s),
                    })
                })
                .collect();
            if !subs.is_empty() {
                r["subresources"] = json!(subs);
            }
            r
        })
        .collect();
    let mut meta = json!({"creationTimestamp": null});
    if !group.is_empty() {
        meta["name"] = json!(group);
    }
    json!({
        "metadata": meta,
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// `/api` or `/apis` in the aggregated form (`APIGroupDiscoveryList`).
pub fn aggregated(served: &dyn Fn(usize) -> bool, core: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(served, "", "v1")]
    } else {
        served_groups(served)
            .into_iter()
            .map(|(g, v)| aggregated_group(served, g, v))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_eviction() {
        let all = |_: usize| true;
        let l = resource_list(&all, "", "v1").unwrap();
        let ev = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(ev["group"], "policy");
        assert_eq!(ev["version"], "v1");
        assert_eq!(ev["kind"], "Eviction");
        let apps = resource_list(&all, "apps", "v1").unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["kind"] == "Scale")
        );
    }

    #[test]
    fn unserved_custom_groups_are_hidden() {
        let builtin_only = |i: usize| resources::get(i).is_builtin();
        let gl = group_list(&builtin_only);
        assert!(
            !gl["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "karpenter.sh")
        );
        assert!(group(&builtin_only, "karpenter.sh").is_none());
    }
}
