//! The Kubernetes API on the wire: Status codes and bodies, the four patch
//! types, server-side apply, optimistic concurrency, pagination, selectors,
//! watches, finalizers, the scale subresource, Table output and discovery.
//!
//! The cluster is frozen (no controllers): these tests read back exactly
//! what they wrote (a scaled Deployment's status, resourceVersions for
//! optimistic concurrency) with nothing else writing in between.

mod common;

use common::{get, http, send_json};
use podnet_sandbox::kube::resources::POD;
use podnet_sandbox::kube::{ListOptions, WatchItem, WatchOptions};
use serde_json::{Value, json};

#[test]
fn status_errors_match_the_apiserver() {
    let sb = common::sandbox_frozen();
    let k = &sb;

    let r = get(k, "/api/v1/namespaces/default/pods/nope");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods \"nope\" not found", "reason": "NotFound",
               "details": {"name": "nope", "kind": "pods"}, "code": 404})
    );

    let r = get(k, "/apis/apps/v1/namespaces/default/deployments/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "deployments.apps \"nope\" not found");
    assert_eq!(
        r.json()["details"],
        json!({"name": "nope", "group": "apps", "kind": "deployments"})
    );

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1"}});
    let r = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");
    assert_eq!(r.json()["message"], "configmaps \"c1\" already exists");

    let r = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
    );
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(
        s["message"],
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");

    let r = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "spec.containers");

    let r = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}}),
    );
    assert_eq!(r.status, 400, "undecodable bodies are a BadRequest");
    assert_eq!(r.json()["reason"], "BadRequest");

    let r = send_json(k, "POST", "/api/v1/namespaces/nope/configmaps", "application/json", &cm);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");

    let r = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    );
    assert_eq!(r.status, 201);
    assert!(r.json()["metadata"]["name"].as_str().unwrap().starts_with("gen-"));

    let r = get(k, "/api/v1/namespaces/default/widgets");
    assert_eq!(r.status, 404);
    let r = get(k, "/api/v1/pods?labelSelector=app%3D%3D%3D");
    assert_eq!(r.status, 400);
    let r = get(k, "/api/v1/pods?fieldSelector=spec.foo%3Dbar");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "field label not supported: spec.foo");
}

#[test]
fn update_with_a_stale_resource_version_conflicts() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let created = send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    )
    .json();
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut v1 = created.clone();
    v1["data"]["a"] = json!("2");
    let r = send_json(
        k,
        "PUT",
        "/api/v1/namespaces/default/configmaps/c",
        "application/json",
        &v1,
    );
    assert_eq!(r.status, 200);
    assert_ne!(r.json()["metadata"]["resourceVersion"].as_str().unwrap(), rv);
    // the same stale version again
    let mut stale = created;
    stale["data"]["a"] = json!("3");
    let r = send_json(
        k,
        "PUT",
        "/api/v1/namespaces/default/configmaps/c",
        "application/json",
        &stale,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    assert_eq!(
        r.json()["message"],
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // a patch carrying a stale resourceVersion is a precondition too
    let r = send_json(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": rv}, "data": {"a": "4"}}),
    );
    assert_eq!(r.status, 409);
}

#[test]
fn patch_types() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let node = sb.world().nodes[2].name.clone();

    // kubectl cordon: strategic merge on spec.unschedulable
    let r = send_json(
        k,
        "PATCH",
        &format!("/api/v1/nodes/{node}"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"unschedulable": true}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["unschedulable"], true);
    assert!(r.json()["spec"]["providerID"].as_str().unwrap().starts_with("aws:///"));
    let r = send_json(
        k,
        "PATCH",
        &format!("/api/v1/nodes/{node}"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"unschedulable": null}}),
    );
    assert!(r.json()["spec"].get("unschedulable").is_none());

    // container env merged by name
    let path = "/apis/apps/v1/namespaces/kube-system/daemonsets/aws-node";
    let before = get(k, path).json();
    let gen_before = before["metadata"]["generation"].as_i64().unwrap();
    let r = send_json(
        k,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        &json!({
            "spec": {"template": {"spec": {"containers": [{"name": "aws-node", "env": [
                {"name": "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "value": "true"},
                {"name": "ENI_CONFIG_LABEL_DEF", "value": "topology.kubernetes.io/zone"}
            ]}]}}}
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ds = r.json();
    assert_eq!(ds["metadata"]["generation"].as_i64().unwrap(), gen_before + 1);
    let containers = ds["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "the sidecar is untouched");
    let env: Vec<&Value> = containers[0]["env"].as_array().unwrap().iter().collect();
    let val = |n: &str| env.iter().find(|e| e["name"] == n).map(|e| e["value"].clone());
    assert_eq!(val("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"), Some(json!("true")));
    assert_eq!(val("ENI_CONFIG_LABEL_DEF"), Some(json!("topology.kubernetes.io/zone")));
    assert_eq!(val("WARM_IP_TARGET"), Some(json!("2")), "other env entries survive");
    assert_eq!(
        env.iter()
            .filter(|e| e["name"] == "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG")
            .count(),
        1
    );

    // JSON merge patch and JSON patch
    send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"a": "1", "b": "2"}}),
    );
    let r = send_json(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/m",
        "application/merge-patch+json",
        &json!({"data": {"a": null, "c": "3"}}),
    );
    assert_eq!(r.json()["data"], json!({"b": "2", "c": "3"}));
    let r = send_json(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/m",
        "application/json-patch+json",
        &json!([{"op": "replace", "path": "/data/b", "value": "20"}, {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["b"], "20");
    assert_eq!(r.json()["metadata"]["labels"]["x"], "y");
    let r = send_json(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/m",
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/data/b", "value": "nope"}]),
    );
    assert_eq!(r.status, 422);

    // custom resources take no strategic merge patch
    let r = send_json(
        k,
        "PATCH",
        "/apis/karpenter.sh/v1/nodepools/default",
        "application/strategic-merge-patch+json",
        &json!({"spec": {"weight": 10}}),
    );
    assert_eq!(r.status, 415);
    let r = send_json(
        k,
        "PATCH",
        "/apis/karpenter.sh/v1/nodepools/default",
        "application/merge-patch+json",
        &json!({"spec": {"weight": 10}}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["generation"], 2);
    let r = http(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/m",
        &[("Content-Type", "text/plain")],
        Some("{}"),
    );
    assert_eq!(r.status, 415);
}

#[test]
fn server_side_apply_creates_then_merges() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let path = "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/ap-northeast-2a?fieldManager=podnet&force=true";
    let first = "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: ap-northeast-2a\n  labels:\n    owner: podnet\n    extra: one\nspec:\n  subnet: subnet-a\n  securityGroups: [sg-1]\n";
    let r = http(
        k,
        "PATCH",
        path,
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(first),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["spec"]["subnet"], "subnet-a");
    let mf = &v["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "podnet");
    assert_eq!(mf["operation"], "Apply");
    assert_eq!(mf["fieldsV1"]["f:spec"]["f:subnet"], json!({}));

    // another writer adds a label the applier never owned
    send_json(
        k,
        "PATCH",
        "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/ap-northeast-2a",
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"someone": "else"}}}),
    );

    let second = json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
        "metadata": {"name": "ap-northeast-2a", "labels": {"owner": "podnet"}},
        "spec": {"subnet": "subnet-b", "securityGroups": ["sg-1", "sg-2"]}});
    let r = http(
        k,
        "PATCH",
        path,
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(&second.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["spec"],
        json!({"subnet": "subnet-b", "securityGroups": ["sg-1", "sg-2"]})
    );
    assert_eq!(
        v["metadata"]["labels"],
        json!({"owner": "podnet", "someone": "else"}),
        "dropped field removed, foreign field kept"
    );
    assert_eq!(v["metadata"]["managedFields"].as_array().unwrap().len(), 1);

    let r = http(
        k,
        "PATCH",
        "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/ap-northeast-2a",
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(first),
    );
    assert_eq!(r.status, 400, "apply needs a fieldManager");

    // a built-in kind: containers merge by name across applies
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n";
    let r = http(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/applied?fieldManager=t",
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(cm),
    );
    assert_eq!(r.status, 201);
}

#[test]
fn pagination_is_consistent() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let all = get(k, "/api/v1/pods").json();
    let names: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names.len(), 130);
    let mut got = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/api/v1/pods?limit=25&continue={t}"),
            None => "/api/v1/pods?limit=25".to_string(),
        };
        let page = get(k, &path).json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 25);
        got.extend(items.iter().map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        }));
        pages += 1;
        if pages == 1 {
            assert_eq!(page["metadata"]["remainingItemCount"], 105);
            // a change between pages does not show up in this list
            let (ns, name) = names.last().unwrap().split_once('/').unwrap();
            sb.store().dyn_api(POD).delete(ns, name).unwrap();
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    assert_eq!(pages, 6);
    assert_eq!(got, names, "pages add up to the list as it was");
    let r = get(k, "/api/v1/pods?limit=5&continue=not-a-token");
    assert_eq!(r.status, 400);
}

#[test]
fn label_and_field_selectors() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let count = |q: &str| {
        let r = get(k, &format!("/api/v1/pods?{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        r.json()["items"].as_array().unwrap().len()
    };
    assert_eq!(count("labelSelector=app%3Dexample-service"), 110);
    assert_eq!(count("labelSelector=k8s-app+in+%28aws-node%2Ckube-proxy%29"), 12);
    assert_eq!(count("labelSelector=k8s-app%2Ck8s-app+notin+%28aws-node%29"), 6 + 2);
    assert_eq!(
        count("labelSelector=%21k8s-app%2C%21app"),
        2,
        "only karpenter has neither"
    );
    assert_eq!(count("labelSelector=app%21%3Dexample-service"), 20);
    let node = &sb.world().nodes[0];
    let on_node = count(&format!("fieldSelector=spec.nodeName%3D{}", node.name));
    assert_eq!(on_node, sb.store().pods_on_node(&node.name).len());
    assert!(on_node >= 2);
    assert_eq!(
        count(&format!(
            "fieldSelector=spec.nodeName%3D{},metadata.namespace%3Dkube-system",
            node.name
        )),
        sb.store()
            .pods_on_node(&node.name)
            .iter()
            .filter(|p| p.namespace() == "kube-system")
            .count()
    );
    assert_eq!(count("fieldSelector=status.phase%3DRunning"), 130);
    assert_eq!(count("fieldSelector=status.phase%21%3DRunning"), 0);
    let nsd = get(
        k,
        "/api/v1/namespaces/kube-system/pods?fieldSelector=metadata.name%21%3Dx",
    )
    .json();
    assert_eq!(nsd["items"].as_array().unwrap().len(), 20);

    // events by involvedObject.name
    for (n, obj) in [("e1", "pod-a"), ("e2", "pod-b")] {
        send_json(
            k,
            "POST",
            "/api/v1/namespaces/default/events",
            "application/json",
            &json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": n},
            "involvedObject": {"kind": "Pod", "name": obj, "namespace": "default"},
            "reason": "FailedCreatePodSandBox", "message": "failed to assign an IP address to container", "type": "Warning"}),
        );
    }
    let ev = get(
        k,
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dpod-b",
    )
    .json();
    assert_eq!(ev["items"].as_array().unwrap().len(), 1);
    assert_eq!(ev["items"][0]["metadata"]["name"], "e2");
    // the typed API uses the same path
    let opts = ListOptions {
        labels: podnet_sandbox::kube::selectors::LabelSelector::parse("app=example-service").unwrap(),
        ..Default::default()
    };
    assert_eq!(
        sb.store()
            .api::<k8s_openapi::api::core::v1::Pod>()
            .list(Some("default"), &opts)
            .unwrap()
            .len(),
        110
    );
}

#[test]
fn watch_streams_events() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let rv = get(k, "/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w1", "labels": {"t": "x"}}}),
    );
    send_json(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/w1",
        "application/merge-patch+json",
        &json!({"data": {"k": "v"}}),
    );
    send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w2"}}),
    );
    http(k, "DELETE", "/api/v1/namespaces/default/configmaps/w1", &[], None);
    let r = get(
        k,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1&labelSelector=t%3Dx"
        ),
    );
    assert_eq!(r.status, 200);
    let events: Vec<Value> = r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(events[1]["object"]["data"]["k"], "v");

    // sendInitialEvents: the current state, then the initial-events-end bookmark
    let r = get(
        k,
        "/apis/apps/v1/namespaces/kube-system/daemonsets?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    );
    let events: Vec<Value> = r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 3, "{}", r.body);
    assert_eq!(events[2]["type"], "BOOKMARK");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let r = get(k, "/api/v1/pods?watch=true&sendInitialEvents=true");
    assert_eq!(r.status, 422);

    // in-process watch through the same machinery
    let store = sb.store().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut w = store
            .watch(
                podnet_sandbox::kube::resources::CONFIGMAP,
                WatchOptions {
                    namespace: Some("default".into()),
                    resource_version: Some(store.resource_version()),
                    ..Default::default()
                },
            )
            .unwrap();
        store
            .dyn_api(podnet_sandbox::kube::resources::CONFIGMAP)
            .create(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w3", "namespace": "default"}}),
            )
            .unwrap();
        match tokio::time::timeout(std::time::Duration::from_secs(30), w.next()).await {
            Ok(Some(WatchItem::Event(kind, obj))) => {
                assert_eq!(kind.as_str(), "ADDED");
                assert_eq!(obj.name(), "w3");
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
fn finalizers_delay_deletion() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    send_json(
        k,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    );
    let r = http(k, "DELETE", "/api/v1/namespaces/default/configmaps/f", &[], None);
    assert_eq!(r.status, 202);
    let v = get(k, "/api/v1/namespaces/default/configmaps/f").json();
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    send_json(
        k,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/f",
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(get(k, "/api/v1/namespaces/default/configmaps/f").status, 404);

    // deleting a Deployment deletes its ReplicaSet and pods (background GC)
    let r = http(
        k,
        "DELETE",
        "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    let pods = get(
        k,
        "/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns",
    )
    .json();
    assert_eq!(pods["items"].as_array().unwrap().len(), 0);
}

#[test]
fn scale_subresource_and_status() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let path = "/apis/apps/v1/namespaces/default/deployments/example-service/scale";
    let s = get(k, path).json();
    assert_eq!(s["kind"], "Scale");
    assert_eq!(s["apiVersion"], "autoscaling/v1");
    assert_eq!(s["spec"]["replicas"], 110);
    assert_eq!(s["status"]["replicas"], 110);
    assert_eq!(s["status"]["selector"], "app=example-service");
    let r = send_json(
        k,
        "PATCH",
        path,
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 120}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["replicas"], 120);
    let d = get(k, "/apis/apps/v1/namespaces/default/deployments/example-service").json();
    assert_eq!(d["spec"]["replicas"], 120);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["status"]["observedGeneration"], 2);
    assert_eq!(d["status"]["unavailableReplicas"], 10);
    // status is its own subresource: a main-resource update cannot touch it
    let mut d2 = d.clone();
    d2["status"]["replicas"] = json!(999);
    let r = send_json(
        k,
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/example-service",
        "application/json",
        &d2,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"]["replicas"], 110);
    let r = send_json(
        k,
        "PUT",
        path,
        "application/json",
        &json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "example-service", "namespace": "default", "resourceVersion": "1"}, "spec": {"replicas": 3}}),
    );
    assert_eq!(r.status, 409);
}

#[test]
fn tables_and_discovery() {
    let sb = common::sandbox_frozen();
    let k = &sb;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let r = http(k, "GET", "/api/v1/nodes", &[("Accept", accept)], None);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;as=Table;v=v1;g=meta.k8s.io")
    );
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..5], ["Name", "Status", "Roles", "Age", "Version"]);
    assert!(cols.contains(&"Internal-IP"));
    assert_eq!(t["rows"].as_array().unwrap().len(), 6);
    assert_eq!(t["rows"][0]["cells"][1], "Ready");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let t = http(
        k,
        "GET",
        "/api/v1/namespaces/default/pods?limit=1",
        &[("Accept", accept)],
        None,
    )
    .json();
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert!(t["metadata"]["continue"].is_string());

    let v = get(k, "/version").json();
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "31");
    let core = get(k, "/api/v1").json();
    let ev = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .unwrap()
        .clone();
    assert_eq!(
        ev,
        json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "kind": "Eviction",
        "verbs": ["create"], "group": "policy", "version": "v1"})
    );
    let groups = get(k, "/apis").json();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "policy",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "crd.k8s.amazonaws.com",
        "karpenter.sh",
        "karpenter.k8s.aws",
    ] {
        assert!(names.contains(&g), "{g} in {names:?}");
    }
    let agg = http(
        k,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )],
        None,
    );
    assert_eq!(
        agg.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    assert_eq!(agg.json()["kind"], "APIGroupDiscoveryList");
    let legacy = http(
        k,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
        )],
        None,
    );
    assert_eq!(
        legacy.json()["kind"],
        "APIGroupList",
        "an unknown aggregated version falls back"
    );
    let crd = get(
        k,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/eniconfigs.crd.k8s.amazonaws.com",
    )
    .json();
    assert!(
        crd["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
}

/// A race: another writer updates the object first, so an update with the
/// resourceVersion the client read gets the API server's 409 Conflict with
/// its Status body; a merge patch without a precondition goes through; a
/// 429 fault carries Retry-After and `details.retryAfterSeconds`.
#[test]
fn a_raced_write_gets_a_real_conflict_and_a_429_says_when_to_retry() {
    use podnet_sandbox::{Fault, Service};
    let sb = common::sandbox_no_moto();
    let path = "/apis/apps/v1/namespaces/kube-system/deployments/karpenter";
    let read = get(&sb, path).json();
    sb.inject_fault(Fault::race("*", 2));
    let stale = send_json(&sb, "PUT", path, "application/json", &read);
    assert_eq!(stale.status, 409, "{}", stale.body);
    let status = stale.json();
    assert_eq!(status["reason"], "Conflict");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .contains("the object has been modified; please apply your changes to the latest version"),
        "{status}"
    );
    let patched = send_json(
        &sb,
        "PATCH",
        path,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"touched": "yes"}}}),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["metadata"]["annotations"]["podnet-sandbox/raced"], "2");

    sb.inject_fault(Fault {
        retry_after: Some(3),
        ..Fault::new(Service::Kube, "list nodes", 1, 429, "TooManyRequests")
    });
    let throttled = get(&sb, "/api/v1/nodes");
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("Retry-After"), Some("3"));
    assert_eq!(throttled.json()["details"]["retryAfterSeconds"], 3);
}
