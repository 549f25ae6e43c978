//! kube-rs 5 (podnet's Kubernetes client) against the sandbox: kubeconfig
//! loading, typed lists with pagination, errors as `kube::Error::Api`,
//! server-side apply of an ENIConfig, a strategic cordon, eviction, the
//! watcher in both list-then-watch and streaming-list modes, and discovery
//! (legacy and aggregated).

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{
    Api, ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use podnet_sandbox::{Sandbox, SandboxOptions};
use serde_json::json;

async fn client(sb: &Sandbox) -> kube::Client {
    let kc = Kubeconfig::read_from(sb.kubeconfig_path()).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig loads");
    kube::Client::try_from(cfg).expect("client builds")
}

async fn start() -> Sandbox {
    Sandbox::start_async(SandboxOptions {
        moto: false,
        ..Default::default()
    })
    .await
    .expect("sandbox starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_patches_and_errors() {
    let sb = start().await;
    let c = client(&sb).await;
    let pods: Api<Pod> = Api::all(c.clone());
    let mut lp = ListParams::default().limit(40);
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let l = pods.list(&lp).await.unwrap();
        pages += 1;
        names.extend(l.items.iter().filter_map(|p| p.metadata.name.clone()));
        match l.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(names.len(), 130);

    let node = sb.world().nodes[3].name.clone();
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .unwrap();
    assert!(
        on_node
            .items
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(node.as_str()))
    );

    match Api::<Pod>::namespaced(c.clone(), "default").get("nope").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.reason, "NotFound");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "k"}, "data": {"a": "1"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    match cms.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected a 409, got {other:?}"),
    }

    let nodes: Api<Node> = Api::all(c.clone());
    let n = nodes
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    assert_eq!(n.spec.unwrap().unschedulable, Some(true));

    // server-side apply of an ENIConfig, twice
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("crd.k8s.amazonaws.com", "v1alpha1", "ENIConfig"),
        "eniconfigs",
    );
    let eni: Api<DynamicObject> = Api::all_with(c.clone(), &ar);
    let pp = PatchParams::apply("podnet").force();
    for subnet in ["subnet-1", "subnet-2"] {
        let o = eni
            .patch(
                "ap-northeast-2a",
                &pp,
                &Patch::Apply(json!({
                    "apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
                    "metadata": {"name": "ap-northeast-2a"},
                    "spec": {"subnet": subnet, "securityGroups": ["sg-1"]}
                })),
            )
            .await
            .unwrap();
        assert_eq!(o.data["spec"]["subnet"], subnet);
    }
    assert_eq!(eni.list(&ListParams::default()).await.unwrap().items.len(), 1);

    // eviction with kube-rs's body
    let ns_pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let victim = ns_pods
        .list(&ListParams::default().labels("app=example-service").limit(1))
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let st = ns_pods.evict(&victim, &EvictParams::default()).await.unwrap();
    assert_eq!(st.code, 201);
    assert!(matches!(ns_pods.get(&victim).await, Err(kube::Error::Api(s)) if s.code == 404));
}

async fn first_apply_of(
    stream: &mut (impl futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin),
    name: &str,
) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            if let watcher::Event::Apply(cm) = ev
                && cm.metadata.name.as_deref() == Some(name)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "watch saw {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_in_both_modes() {
    let sb = start().await;
    let c = client(&sb).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for (mode, cfg) in [
        ("list-watch", watcher::Config::default()),
        ("streaming", watcher::Config::default().streaming_lists()),
    ] {
        let mut stream = watcher(cms.clone(), cfg).boxed();
        // the initial state arrives, ending with InitDone
        let init = tokio::time::timeout(Duration::from_secs(60), async {
            let mut n = 0;
            while let Some(ev) = stream.try_next().await.unwrap() {
                match ev {
                    watcher::Event::InitApply(_) => n += 1,
                    watcher::Event::InitDone => return n,
                    _ => {}
                }
            }
            n
        })
        .await
        .unwrap();
        // the second watcher starts after the first one's ConfigMap exists
        assert_eq!(init, if mode == "list-watch" { 0 } else { 1 });
        let name = format!("watched-{mode}");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        first_apply_of(&mut stream, &name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_legacy_and_aggregated() {
    let sb = start().await;
    let c = client(&sb).await;
    for aggregated in [false, true] {
        let d = kube::Discovery::new(c.clone());
        let d = if aggregated {
            d.run_aggregated().await
        } else {
            d.run().await
        }
        .unwrap();
        let (ar, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk("crd.k8s.amazonaws.com", "v1alpha1", "ENIConfig"))
            .expect("ENIConfig discovered");
        assert_eq!(ar.plural, "eniconfigs");
        assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
        let (_, pod_caps) = d
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Pod"))
            .expect("pods discovered");
        assert!(
            pod_caps
                .subresources
                .iter()
                .any(|(r, _)| r.plural == "pods/eviction" || r.plural == "eviction"),
            "pods/eviction listed ({aggregated})"
        );
        assert!(d.has_group("karpenter.sh"));
    }
}
