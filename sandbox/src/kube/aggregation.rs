//! Aggregated APIs (`apiregistration.k8s.io/v1` `APIService` backed by a
//! Service) in discovery, as kube-aggregator serves them: the group is
//! listed while its APIService exists; while the APIService is not
//! `Available`, `/apis/<group>/<version>` answers 503 (a client on legacy
//! discovery then reports `couldn't get resource list for
//! metrics.k8s.io/v1beta1: the server is currently unable to handle the
//! request`) and the aggregated discovery document marks the version
//! `freshness: Stale` with no resources (apidiscovery.k8s.io/v2; client-go
//! turns it into a `StaleGroupVersionError` and drops the group version). The sandbox serves no aggregated resources
//! themselves: an available group lists its resources, and a request for
//! them is answered by the same 503 when unavailable, 404 otherwise.
//!
//! The `Available` condition is kept by `controllers::aggregation`.

use serde_json::{Value, json};

use super::resources::APISERVICE;
use super::status::ApiError;
use super::store::Store;

/// One APIService backed by an in-cluster Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub group: String,
    pub version: String,
    pub available: bool,
}

/// The resources a known aggregated group version serves (metrics-server's).
fn resources_of(group: &str, version: &str) -> Vec<(&'static str, &'static str, &'static str, bool)> {
    match (group, version) {
        ("metrics.k8s.io", "v1beta1") => vec![
            ("nodes", "node", "NodeMetrics", false),
            ("pods", "pod", "PodMetrics", true),
        ],
        _ => Vec::new(),
    }
}

/// Every APIService with `spec.service` (local ones are the server's own).
pub fn remotes(store: &Store) -> Vec<Remote> {
    let inner = store.read();
    inner
        .iter_ns(APISERVICE, None)
        .filter(|a| a.value.pointer("/spec/service").is_some_and(|s| !s.is_null()))
        .map(|a| {
            let v = &a.value;
            let str_at = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            let available = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Available")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                });
            Remote {
                group: str_at("/spec/group"),
                version: str_at("/spec/version"),
                available,
            }
        })
        .collect()
}

/// The 503 of an aggregated API whose backend is unavailable.
pub fn unavailable() -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
    )
}

fn group_doc(r: &Remote) -> Value {
    let gv = json!({"groupVersion": format!("{}/{}", r.group, r.version), "version": r.version});
    json!({"name": r.group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// Adds the aggregated groups to an `APIGroupList`.
pub fn extend_group_list(list: &mut Value, remotes: &[Remote]) {
    if let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) {
        groups.extend(remotes.iter().map(group_doc));
    }
}

/// `/apis/<group>` for an aggregated group.
pub fn group(remotes: &[Remote], name: &str) -> Option<Value> {
    let r = remotes.iter().find(|r| r.group == name)?;
    let mut doc = group_doc(r);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/apis/<group>/<version>`: the resource list, or the 503.
pub fn resource_list(remotes: &[Remote], group: &str, version: &str) -> Option<Result<Value, ApiError>> {
    let r = remotes.iter().find(|r| r.group == group && r.version == version)?;
    if !r.available {
        return Some(Err(unavailable()));
    }
    let resources: Vec<Value> = resources_of(group, version)
        .into_iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({"name": plural, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]})
        })
        .collect();
    Some(Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    })))
}

/// Adds the aggregated groups to an `APIGroupDiscoveryList`: `Current`
/// with their resources when available, `Stale` and empty otherwise.
pub fn extend_aggregated(list: &mut Value, remotes: &[Remote]) {
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    for r in remotes {
        let resources: Vec<Value> = if r.available {
            resources_of(&r.group, &r.version)
                .into_iter()
                .map(|(plural, singular, kind, namespaced)| {
                    json!({
                        "resource": plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": kind},
                        "scope": if namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": singular,
                        "verbs": ["get", "list"],
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        items.push(json!({
            "metadata": {"name": r.group, "creationTimestamp": null},
            "versions": [{
                "version": r.version,
                "resources": resources,
                "freshness": if r.available { "Current" } else { "Stale" },
            }],
        }));
    }
}

/// The answer to a resource request inside an aggregated group version
/// (`None` when the path is not in one).
pub fn refuse_path(remotes: &[Remote], segs: &[&str]) -> Option<ApiError> {
    let ["apis", g, v, _, ..] = segs else {
        return None;
    };
    let r = remotes.iter().find(|r| r.group == *g && r.version == *v)?;
    Some(if r.available {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    } else {
        unavailable()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(available: bool) -> Vec<Remote> {
        vec![Remote {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            available,
        }]
    }

    #[test]
    fn an_unavailable_group_answers_503_and_is_stale() {
        let r = metrics(false);
        let e = resource_list(&r, "metrics.k8s.io", "v1beta1").unwrap().unwrap_err();
        assert_eq!(e.code, 503);
        let mut list = json!({"items": []});
        extend_aggregated(&mut list, &r);
        assert_eq!(list["items"][0]["versions"][0]["freshness"], "Stale");
    }

    #[test]
    fn an_available_group_lists_its_resources() {
        let r = metrics(true);
        let list = resource_list(&r, "metrics.k8s.io", "v1beta1").unwrap().unwrap();
        assert_eq!(list["resources"][0]["kind"], "NodeMetrics");
        assert!(resource_list(&r, "other.io", "v1").is_none());
    }
}
