//! The simulated EKS control plane: clusters, managed node groups, add-ons
//! and their updates, with the REST-JSON shapes of the EKS API (see
//! `handlers.rs` for the routes). Updates are recorded with their
//! `clientRequestToken`, stay `InProgress` for a while on the scaled clock
//! and then become `Successful`; a vpc-cni update then writes its `env`
//! values into the aws-node DaemonSet and rolls it.
//!
//! Node group rollouts themselves (new instances, drains) belong to the next
//! sandbox issue: it turns `auto_complete_nodegroup_updates` off and calls
//! [`Eks::complete_update`] when its rollout ends.

pub mod error;
pub mod handlers;
pub mod schema;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::clock::Clock;
use crate::kube::Store;
use crate::kube::resources::{DAEMONSET, DEPLOYMENT};
pub use error::EksError;

/// Seconds since the epoch, as EKS timestamps are sent.
pub fn epoch_now() -> f64 {
    let t = jiff::Timestamp::now();
    t.as_millisecond() as f64 / 1000.0
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub version: String,
    pub platform_version: String,
    pub endpoint: String,
    pub role_arn: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub cluster_security_group_id: String,
    pub service_ipv4_cidr: String,
    pub ip_family: String,
    /// EKS Auto Mode (`computeConfig.enabled`).
    pub auto_mode: bool,
    pub certificate_authority: String,
    pub oidc_issuer: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct LaunchTemplateRef {
    pub name: String,
    pub id: String,
    pub version: String,
}

#[derive(Debug, Clone)]
pub struct Nodegroup {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub modified_at: f64,
    pub version: String,
    pub release_version: String,
    pub status: String,
    pub capacity_type: String,
    pub min_size: i64,
    pub max_size: i64,
    pub desired_size: i64,
    pub instance_types: Vec<String>,
    pub subnets: Vec<String>,
    pub ami_type: String,
    pub node_role: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub launch_template: Option<LaunchTemplateRef>,
    pub asg_name: String,
    pub max_unavailable: i64,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Addon {
    pub name: String,
    pub version: String,
    pub status: String,
    pub arn: String,
    pub created_at: f64,
    pub modified_at: f64,
    pub configuration_values: Option<String>,
    pub service_account_role_arn: Option<String>,
}

/// What an update is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateTarget {
    Nodegroup(String),
    Addon(String),
}

#[derive(Debug, Clone)]
pub struct Update {
    pub id: String,
    pub status: String,
    pub kind: String,
    pub params: Vec<(String, String)>,
    pub created_at: f64,
    pub errors: Vec<Value>,
    pub target: UpdateTarget,
    /// What to apply when it succeeds.
    pub apply: UpdateEffect,
}

#[derive(Debug, Clone)]
pub enum UpdateEffect {
    Addon {
        version: String,
        configuration_values: Option<String>,
    },
    NodegroupVersion {
        launch_template_version: Option<String>,
        release_version: Option<String>,
        version: Option<String>,
        /// Replace nodes even when a PDB blocks their pods' eviction.
        force: bool,
    },
    NodegroupConfig {
        scaling: Option<(i64, i64, i64)>,
        add_labels: BTreeMap<String, String>,
        remove_labels: Vec<String>,
        max_unavailable: Option<i64>,
    },
}

struct ClusterState {
    cluster: Cluster,
    nodegroups: BTreeMap<String, Nodegroup>,
    addons: BTreeMap<String, Addon>,
    updates: Vec<Update>,
    tokens: HashMap<(String, String), String>,
}

/// How long updates take, in simulated time.
#[derive(Debug, Clone)]
pub struct Timings {
    pub addon: Duration,
    pub nodegroup_version: Duration,
    pub nodegroup_config: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            addon: Duration::from_secs(90),
            nodegroup_version: Duration::from_secs(360),
            nodegroup_config: Duration::from_secs(60),
        }
    }
}

/// One supported add-on version (`DescribeAddonVersions`).
#[derive(Debug, Clone)]
pub struct AddonVersion {
    pub addon: &'static str,
    pub version: &'static str,
    pub default_for: &'static [&'static str],
    pub clusters: &'static [&'static str],
}

pub const ADDON_VERSIONS: &[AddonVersion] = &[
    AddonVersion {
        addon: "vpc-cni",
        version: "v1.19.2-eksbuild.1",
        default_for: &["1.31"],
        clusters: &["1.29", "1.30", "1.31", "1.32"],
    },
    AddonVersion {
        addon: "vpc-cni",
        version: "v1.19.0-eksbuild.1",
        default_for: &[],
        clusters: &["1.28", "1.29", "1.30", "1.31"],
    },
    AddonVersion {
        addon: "vpc-cni",
        version: "v1.18.6-eksbuild.1",
        default_for: &["1.30"],
        clusters: &["1.27", "1.28", "1.29", "1.30", "1.31"],
    },
    AddonVersion {
        addon: "vpc-cni",
        version: "v1.12.6-eksbuild.2",
        default_for: &[],
        clusters: &["1.24", "1.25", "1.26"],
    },
    AddonVersion {
        addon: "kube-proxy",
        version: "v1.31.3-eksbuild.2",
        default_for: &["1.31"],
        clusters: &["1.31"],
    },
    AddonVersion {
        addon: "kube-proxy",
        version: "v1.31.2-eksbuild.3",
        default_for: &[],
        clusters: &["1.31"],
    },
    AddonVersion {
        addon: "coredns",
        version: "v1.11.4-eksbuild.2",
        default_for: &["1.31"],
        clusters: &["1.29", "1.30", "1.31"],
    },
    AddonVersion {
        addon: "coredns",
        version: "v1.11.3-eksbuild.1",
        default_for: &[],
        clusters: &["1.29", "1.30", "1.31"],
    },
];

/// The configuration schema of an add-on.
pub fn addon_schema(addon: &str) -> Option<Value> {
    match addon {
        "vpc-cni" => Some(schema::vpc_cni()),
        "coredns" => Some(schema::coredns()),
        "kube-proxy" => Some(schema::kube_proxy()),
        _ => None,
    }
}

/// The ECR registry EKS add-on images come from in a region.
pub fn ecr_registry(region: &str) -> String {
    format!("602401143452.dkr.ecr.{region}.amazonaws.com")
}

/// aws-node's env as the EKS vpc-cni add-on installs it, before any
/// configuration values.
pub fn vpc_cni_default_env(cluster: &str, vpc_id: &str, version: &str) -> BTreeMap<String, String> {
    let short = version.split('-').next().unwrap_or(version);
    [
        ("ADDITIONAL_ENI_TAGS", "{}"),
        ("ANNOTATE_POD_IP", "false"),
        ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "true"),
        ("AWS_VPC_ENI_MTU", "9001"),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "false"),
        ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "false"),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG"),
        ("AWS_VPC_K8S_CNI_LOG_FILE", "/host/var/log/aws-routed-eni/ipamd.log"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "prng"),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "eni"),
        ("AWS_VPC_K8S_PLUGIN_LOG_FILE", "/var/log/aws-routed-eni/plugin.log"),
        ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "DEBUG"),
        ("CLUSTER_NAME", cluster),
        ("DISABLE_INTROSPECTION", "false"),
        ("DISABLE_METRICS", "false"),
        ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "false"),
        ("ENABLE_IPv4", "true"),
        ("ENABLE_IPv6", "false"),
        ("ENABLE_POD_ENI", "false"),
        ("ENABLE_PREFIX_DELEGATION", "false"),
        ("ENABLE_SUBNET_DISCOVERY", "true"),
        ("NETWORK_POLICY_ENFORCING_MODE", "standard"),
        ("VPC_CNI_VERSION", short),
        ("VPC_ID", vpc_id),
        ("WARM_ENI_TARGET", "1"),
        ("WARM_PREFIX_TARGET", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// aws-node's container env list: the defaults overlaid with the add-on's
/// configured `env`, plus the downward-API variables.
pub fn aws_node_env(defaults: &BTreeMap<String, String>, config: &Value) -> Vec<Value> {
    let mut env = defaults.clone();
    if let Some(m) = config.get("env").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                env.insert(k.clone(), s.to_string());
            }
        }
    }
    let mut out: Vec<Value> = env.into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    out.push(
        json!({"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}),
    );
    out.push(
        json!({"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}),
    );
    out
}

/// The simulated EKS service.
pub struct Eks {
    clusters: Mutex<BTreeMap<String, ClusterState>>,
    pub region: String,
    pub account: String,
    pub clock: Clock,
    pub timings: Timings,
    store: Arc<Store>,
    /// When false, node group updates stay InProgress until someone calls
    /// [`Eks::complete_update`] (the rollout controller of the next issue).
    pub auto_complete_nodegroup_updates: AtomicBool,
}

fn page<T: Clone>(items: &[T], q: &HashMap<String, String>) -> Result<(Vec<T>, Option<String>), EksError> {
    let start = match q.get("nextToken") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| EksError::invalid_parameter("The nextToken is invalid."))?,
        None => 0,
    };
    let max = match q.get("maxResults") {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=100).contains(m))
            .ok_or_else(|| EksError::invalid_parameter("maxResults must be between 1 and 100."))?,
        None => 100,
    };
    let end = (start + max).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    let next = (end < items.len()).then(|| end.to_string());
    Ok((slice, next))
}

impl Eks {
    pub fn new(store: Arc<Store>, region: &str, account: &str, clock: Clock, timings: Timings) -> Self {
        Eks {
            clusters: Mutex::new(BTreeMap::new()),
            region: region.to_string(),
            account: account.to_string(),
            clock,
            timings,
            store,
            auto_complete_nodegroup_updates: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ClusterState>> {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:eks:{}:{}:{resource}", self.region, self.account)
    }

    pub fn add_cluster(&self, c: Cluster) {
        self.lock().insert(
            c.name.clone(),
            ClusterState {
                cluster: c,
                nodegroups: BTreeMap::new(),
                addons: BTreeMap::new(),
                updates: Vec::new(),
                tokens: HashMap::new(),
            },
        );
    }

    pub fn add_nodegroup(&self, cluster: &str, ng: Nodegroup) -> Result<(), EksError> {
        let mut all = self.lock();
        let cs = all
            .get_mut(cluster)
            .ok_or_else(|| EksError::cluster_not_found(cluster))?;
        cs.nodegroups.insert(ng.name.clone(), ng);
        Ok(())
    }

    pub fn add_addon(&self, cluster: &str, addon: Addon) -> Result<(), EksError> {
        let mut all = self.lock();
        let cs = all
            .get_mut(cluster)
            .ok_or_else(|| EksError::cluster_not_found(cluster))?;
        cs.addons.insert(addon.name.clone(), addon);
        Ok(())
    }

    /// A copy of a cluster's description.
    pub fn cluster(&self, name: &str) -> Option<Cluster> {
        self.lock().get(name).map(|c| c.cluster.clone())
    }

    pub fn nodegroup(&self, cluster: &str, name: &str) -> Option<Nodegroup> {
        self.lock().get(cluster).and_then(|c| c.nodegroups.get(name).cloned())
    }

    pub fn addon(&self, cluster: &str, name: &str) -> Option<Addon> {
        self.lock().get(cluster).and_then(|c| c.addons.get(name).cloned())
    }

    pub fn updates(&self, cluster: &str) -> Vec<Update> {
        self.lock().get(cluster).map(|c| c.updates.clone()).unwrap_or_default()
    }

    fn with_cluster<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut ClusterState) -> Result<R, EksError>,
    ) -> Result<R, EksError> {
        let mut all = self.lock();
        let cs = all.get_mut(name).ok_or_else(|| EksError::cluster_not_found(name))?;
        f(cs)
    }

    pub fn list_clusters(&self, q: &HashMap<String, String>) -> Result<Value, EksError> {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        let (items, next) = page(&names, q)?;
        Ok(with_next(json!({"clusters": items}), next))
    }

    pub fn describe_cluster(&self, name: &str) -> Result<Value, EksError> {
        self.with_cluster(name, |cs| Ok(json!({"cluster": cluster_json(&cs.cluster)})))
    }

    pub fn list_nodegroups(&self, cluster: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let names: Vec<String> = cs.nodegroups.keys().cloned().collect();
            let (items, next) = page(&names, q)?;
            Ok(with_next(json!({"nodegroups": items}), next))
        })
    }

    fn nodegroup_not_found(ng: &str, cluster: &str) -> EksError {
        EksError::not_found(format!("No node group found for name: {ng}."))
            .with("clusterName", cluster)
            .with("nodegroupName", ng)
    }

    fn addon_not_found(addon: &str, cluster: &str) -> EksError {
        EksError::not_found(format!("No addon: {addon} found in cluster: {cluster}"))
            .with("clusterName", cluster)
            .with("addonName", addon)
    }

    pub fn describe_nodegroup(&self, cluster: &str, ng: &str) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let n = cs
                .nodegroups
                .get(ng)
                .ok_or_else(|| Self::nodegroup_not_found(ng, cluster))?;
            Ok(json!({"nodegroup": nodegroup_json(cluster, n)}))
        })
    }

    pub fn list_addons(&self, cluster: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let names: Vec<String> = cs.addons.keys().cloned().collect();
            let (items, next) = page(&names, q)?;
            Ok(with_next(json!({"addons": items}), next))
        })
    }

    pub fn describe_addon(&self, cluster: &str, addon: &str) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let a = cs
                .addons
                .get(addon)
                .ok_or_else(|| Self::addon_not_found(addon, cluster))?;
            Ok(json!({"addon": addon_json(cluster, a)}))
        })
    }

    pub fn describe_update(&self, cluster: &str, id: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            if let Some(ng) = q.get("nodegroupName")
                && !cs.nodegroups.contains_key(ng)
            {
                return Err(Self::nodegroup_not_found(ng, cluster));
            }
            if let Some(a) = q.get("addonName")
                && !cs.addons.contains_key(a)
            {
                return Err(Self::addon_not_found(a, cluster));
            }
            let want = match (q.get("nodegroupName"), q.get("addonName")) {
                (Some(ng), _) => Some(UpdateTarget::Nodegroup(ng.clone())),
                (None, Some(a)) => Some(UpdateTarget::Addon(a.clone())),
                _ => None,
            };
            let u = cs
                .updates
                .iter()
                .find(|u| u.id == id && want.as_ref() == Some(&u.target))
                .ok_or_else(|| {
                    EksError::not_found(format!("No update found for ID: {id}")).with("clusterName", cluster)
                })?;
            Ok(json!({"update": update_json(u)}))
        })
    }

    pub fn list_updates(&self, cluster: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let want = match (q.get("nodegroupName"), q.get("addonName")) {
                (Some(ng), _) => {
                    if !cs.nodegroups.contains_key(ng) {
                        return Err(Self::nodegroup_not_found(ng, cluster));
                    }
                    Some(UpdateTarget::Nodegroup(ng.clone()))
                }
                (None, Some(a)) => {
                    if !cs.addons.contains_key(a) {
                        return Err(Self::addon_not_found(a, cluster));
                    }
                    Some(UpdateTarget::Addon(a.clone()))
                }
                _ => None,
            };
            let ids: Vec<String> = cs
                .updates
                .iter()
                .filter(|u| want.as_ref() == Some(&u.target))
                .map(|u| u.id.clone())
                .collect();
            let (items, next) = page(&ids, q)?;
            Ok(with_next(json!({"updateIds": items}), next))
        })
    }

    pub fn describe_addon_versions(&self, q: &HashMap<String, String>) -> Result<Value, EksError> {
        let kv = q.get("kubernetesVersion");
        let name = q.get("addonName");
        let mut by_addon: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for v in ADDON_VERSIONS {
            if name.is_some_and(|n| n != v.addon) {
                continue;
            }
            let clusters: Vec<&&str> = v.clusters.iter().filter(|c| kv.is_none_or(|k| k == **c)).collect();
            if clusters.is_empty() {
                continue;
            }
            let compat: Vec<Value> = clusters
                .iter()
                .map(|c| json!({"clusterVersion": c, "platformVersions": ["*"], "defaultVersion": v.default_for.contains(c)}))
                .collect();
            by_addon.entry(v.addon).or_default().push(json!({
                "addonVersion": v.version,
                "architecture": ["amd64", "arm64"],
                "computeTypes": ["ec2", "hybrid"],
                "compatibilities": compat,
                "requiresConfiguration": false,
                "requiresIamPermissions": v.addon == "vpc-cni",
            }));
        }
        if let Some(n) = name
            && by_addon.is_empty()
            && !ADDON_VERSIONS.iter().any(|v| v.addon == n)
        {
            return Err(EksError::not_found(format!("Addon {n} not found")).with("addonName", n));
        }
        let addons: Vec<Value> = by_addon
            .into_iter()
            .map(|(a, versions)| {
                json!({
                    "addonName": a,
                    "type": "networking",
                    "addonVersions": versions,
                    "publisher": "eks",
                    "owner": "aws",
                    "defaultNamespace": "kube-system",
                })
            })
            .collect();
        let (items, next) = page(&addons, q)?;
        Ok(with_next(json!({"addons": items}), next))
    }

    pub fn describe_addon_configuration(&self, q: &HashMap<String, String>) -> Result<Value, EksError> {
        let (Some(name), Some(version)) = (q.get("addonName"), q.get("addonVersion")) else {
            return Err(EksError::invalid_parameter("addonName and addonVersion are required."));
        };
        if !ADDON_VERSIONS.iter().any(|v| v.addon == name) {
            return Err(EksError::not_found(format!("Addon {name} not found")).with("addonName", name));
        }
        if !ADDON_VERSIONS.iter().any(|v| v.addon == name && v.version == version) {
            return Err(EksError::invalid_parameter(format!(
                "Addon version {version} is not supported for addon {name}"
            ))
            .with("addonName", name));
        }
        let schema = addon_schema(name).unwrap_or(json!({}));
        let mut out = json!({
            "addonName": name,
            "addonVersion": version,
            "configurationSchema": schema.to_string(),
        });
        if name == "vpc-cni" {
            out["podIdentityConfiguration"] = json!([{
                "serviceAccount": "aws-node",
                "recommendedManagedPolicies": ["arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]
            }]);
        }
        Ok(out)
    }

    /// `UpdateAddon`.
    pub fn update_addon(self: &Arc<Self>, cluster: &str, addon: &str, body: &Value) -> Result<Value, EksError> {
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let version = body.get("addonVersion").and_then(Value::as_str);
        let resolve = body.get("resolveConflicts").and_then(Value::as_str);
        if let Some(r) = resolve
            && !matches!(r, "OVERWRITE" | "NONE" | "PRESERVE")
        {
            return Err(EksError::invalid_parameter(format!(
                "resolveConflicts {r} is not valid; valid values are OVERWRITE, NONE, PRESERVE"
            )));
        }
        let config = body.get("configurationValues").and_then(Value::as_str);
        let (update, fresh) = self.with_cluster(cluster, |cs| {
            let a = cs
                .addons
                .get(addon)
                .ok_or_else(|| Self::addon_not_found(addon, cluster))?;
            if let Some(t) = &token
                && let Some(id) = cs.tokens.get(&(addon.to_string(), t.clone()))
                && let Some(u) = cs.updates.iter().find(|u| &u.id == id)
            {
                return Ok((u.clone(), false));
            }
            if a.status == "UPDATING" {
                return Err(EksError::in_use(format!(
                    "Addon {addon} cannot be updated as it is currently in UPDATING state"
                ))
                .with("clusterName", cluster)
                .with("addonName", addon));
            }
            let new_version = version.unwrap_or(&a.version).to_string();
            if !ADDON_VERSIONS
                .iter()
                .any(|v| v.addon == addon && v.version == new_version)
            {
                return Err(EksError::invalid_parameter(format!(
                    "Addon version specified is not supported for {addon}: {new_version}"
                ))
                .with("clusterName", cluster)
                .with("addonName", addon));
            }
            if let Some(text) = config {
                let parsed = schema::parse_configuration(text).map_err(|m| {
                    EksError::invalid_parameter(m)
                        .with("clusterName", cluster)
                        .with("addonName", addon)
                })?;
                let schema = addon_schema(addon).unwrap_or(json!({}));
                schema::validate(&schema, &parsed).map_err(|errs| {
                    EksError::invalid_parameter(format!(
                        "ConfigurationValue provided in request is not supported: Json schema validation failed with error: [{}]",
                        errs.join(", ")
                    ))
                    .with("clusterName", cluster)
                    .with("addonName", addon)
                })?;
            }
            let mut params = vec![("AddonVersion".to_string(), new_version.clone())];
            if let Some(r) = resolve {
                params.push(("ResolveConflicts".to_string(), r.to_string()));
            }
            if let Some(c) = config {
                params.push(("ConfigurationValues".to_string(), c.to_string()));
            }
            let u = Update {
                id: uuid::Uuid::new_v4().to_string(),
                status: "InProgress".into(),
                kind: "AddonUpdate".into(),
                params,
                created_at: epoch_now(),
                errors: vec![],
                target: UpdateTarget::Addon(addon.to_string()),
                apply: UpdateEffect::Addon {
                    version: new_version,
                    configuration_values: config.map(str::to_string),
                },
            };
            if let Some(t) = &token {
                cs.tokens.insert((addon.to_string(), t.clone()), u.id.clone());
            }
            if let Some(a) = cs.addons.get_mut(addon) {
                a.status = "UPDATING".into();
                a.modified_at = epoch_now();
            }
            cs.updates.push(u.clone());
            Ok((u, true))
        })?;
        if fresh {
            self.schedule(cluster, &update.id, self.timings.addon);
        }
        Ok(json!({"update": update_json(&update)}))
    }

    /// `UpdateNodegroupVersion`.
    pub fn update_nodegroup_version(
        self: &Arc<Self>,
        cluster: &str,
        ng: &str,
        body: &Value,
    ) -> Result<Value, EksError> {
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let lt = body.get("launchTemplate");
        let (update, fresh) = self.with_cluster(cluster, |cs| {
            let cluster_version = cs.cluster.version.clone();
            let n = cs
                .nodegroups
                .get(ng)
                .ok_or_else(|| Self::nodegroup_not_found(ng, cluster))?;
            if let Some(t) = &token
                && let Some(id) = cs.tokens.get(&(ng.to_string(), t.clone()))
                && let Some(u) = cs.updates.iter().find(|u| &u.id == id)
            {
                return Ok((u.clone(), false));
            }
            if n.status != "ACTIVE" {
                return Err(EksError::in_use(format!(
                    "Nodegroup {ng} cannot be updated as it is currently in {} state",
                    n.status
                ))
                .with("clusterName", cluster)
                .with("nodegroupName", ng));
            }
            let mut params = Vec::new();
            let mut lt_version = None;
            if let Some(lt) = lt {
                let Some(cur) = &n.launch_template else {
                    return Err(EksError::invalid_parameter(
                        "You cannot specify a launch template for a node group that was not created with one.",
                    )
                    .with("clusterName", cluster)
                    .with("nodegroupName", ng));
                };
                let id = lt.get("id").and_then(Value::as_str);
                let name = lt.get("name").and_then(Value::as_str);
                if id.is_some_and(|i| i != cur.id) || name.is_some_and(|x| x != cur.name) {
                    return Err(EksError::invalid_parameter(
                        "The launch template specified does not match the node group's launch template.",
                    )
                    .with("clusterName", cluster)
                    .with("nodegroupName", ng));
                }
                let v = lt
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or("$Default")
                    .to_string();
                params.push(("LaunchTemplateName".to_string(), cur.name.clone()));
                params.push(("LaunchTemplateVersion".to_string(), v.clone()));
                lt_version = Some(v);
            }
            let version = body.get("version").and_then(Value::as_str).map(str::to_string);
            if let Some(v) = &version {
                if *v != cluster_version && *v != n.version {
                    return Err(EksError::invalid_parameter(format!(
                        "Requested Nodegroup version {v} is not supported for cluster version {cluster_version}"
                    ))
                    .with("nodegroupName", ng));
                }
                params.push(("Version".to_string(), v.clone()));
            }
            let release = body.get("releaseVersion").and_then(Value::as_str).map(str::to_string);
            if let Some(r) = &release {
                params.push(("ReleaseVersion".to_string(), r.clone()));
            }
            if lt.is_none() && version.is_none() && release.is_none() {
                params.push(("Version".to_string(), n.version.clone()));
                params.push(("ReleaseVersion".to_string(), n.release_version.clone()));
            }
            let u = Update {
                id: uuid::Uuid::new_v4().to_string(),
                status: "InProgress".into(),
                kind: "VersionUpdate".into(),
                params,
                created_at: epoch_now(),
                errors: vec![],
                target: UpdateTarget::Nodegroup(ng.to_string()),
                apply: UpdateEffect::NodegroupVersion {
                    launch_template_version: lt_version,
                    release_version: release,
                    version,
                    force: body.get("force").and_then(Value::as_bool).unwrap_or(false),
                },
            };
            if let Some(t) = &token {
                cs.tokens.insert((ng.to_string(), t.clone()), u.id.clone());
            }
            if let Some(n) = cs.nodegroups.get_mut(ng) {
                n.status = "UPDATING".into();
                n.modified_at = epoch_now();
            }
            cs.updates.push(u.clone());
            Ok((u, true))
        })?;
        if fresh && self.auto_complete_nodegroup_updates.load(Ordering::SeqCst) {
            self.schedule(cluster, &update.id, self.timings.nodegroup_version);
        }
        Ok(json!({"update": update_json(&update)}))
    }

    /// `UpdateNodegroupConfig`.
    pub fn update_nodegroup_config(self: &Arc<Self>, cluster: &str, ng: &str, body: &Value) -> Result<Value, EksError> {
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (update, fresh) = self.with_cluster(cluster, |cs| {
            let n = cs
                .nodegroups
                .get(ng)
                .ok_or_else(|| Self::nodegroup_not_found(ng, cluster))?;
            if let Some(t) = &token
                && let Some(id) = cs.tokens.get(&(ng.to_string(), t.clone()))
                && let Some(u) = cs.updates.iter().find(|u| &u.id == id)
            {
                return Ok((u.clone(), false));
            }
            if n.status != "ACTIVE" {
                return Err(EksError::in_use(format!(
                    "Nodegroup {ng} cannot be updated as it is currently in {} state",
                    n.status
                ))
                .with("clusterName", cluster)
                .with("nodegroupName", ng));
            }
            let mut params = Vec::new();
            let mut scaling = None;
            if let Some(sc) = body.get("scalingConfig") {
                let get = |k: &str, d: i64| sc.get(k).and_then(Value::as_i64).unwrap_or(d);
                let (min, max, desired) = (
                    get("minSize", n.min_size),
                    get("maxSize", n.max_size),
                    get("desiredSize", n.desired_size),
                );
                if min < 0 || max < 1 || min > max || desired < min || desired > max {
                    return Err(EksError::invalid_parameter(
                        "Minimum capacity must be less than or equal to desired capacity, and desired capacity must be less than or equal to maximum capacity.",
                    )
                    .with("clusterName", cluster)
                    .with("nodegroupName", ng));
                }
                for (k, v) in [("MinSize", min), ("MaxSize", max), ("DesiredSize", desired)] {
                    if sc.get(format!("{}{}", k[..1].to_lowercase(), &k[1..])).is_some() {
                        params.push((k.to_string(), v.to_string()));
                    }
                }
                scaling = Some((min, max, desired));
            }
            let mut add_labels = BTreeMap::new();
            let mut remove_labels = Vec::new();
            if let Some(l) = body.get("labels") {
                if let Some(m) = l.get("addOrUpdateLabels").and_then(Value::as_object) {
                    for (k, v) in m {
                        add_labels.insert(k.clone(), v.as_str().unwrap_or("").to_string());
                    }
                    params.push(("LabelsToAdd".to_string(), Value::Object(m.clone()).to_string()));
                }
                if let Some(a) = l.get("removeLabels").and_then(Value::as_array) {
                    remove_labels = a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect();
                    params.push(("LabelsToRemove".to_string(), json!(remove_labels).to_string()));
                }
            }
            let mut max_unavailable = None;
            if let Some(uc) = body.get("updateConfig") {
                if let Some(m) = uc.get("maxUnavailable").and_then(Value::as_i64) {
                    max_unavailable = Some(m);
                    params.push(("MaxUnavailable".to_string(), m.to_string()));
                }
                if let Some(p) = uc.get("maxUnavailablePercentage").and_then(Value::as_i64) {
                    params.push(("MaxUnavailablePercentage".to_string(), p.to_string()));
                }
            }
            if params.is_empty() {
                return Err(EksError::invalid_parameter(
                    "No changes needed for the nodegroup configuration.",
                )
                .with("clusterName", cluster)
                .with("nodegroupName", ng));
            }
            let u = Update {
                id: uuid::Uuid::new_v4().to_string(),
                status: "InProgress".into(),
                kind: "ConfigUpdate".into(),
                params,
                created_at: epoch_now(),
                errors: vec![],
                target: UpdateTarget::Nodegroup(ng.to_string()),
                apply: UpdateEffect::NodegroupConfig {
                    scaling,
                    add_labels,
                    remove_labels,
                    max_unavailable,
                },
            };
            if let Some(t) = &token {
                cs.tokens.insert((ng.to_string(), t.clone()), u.id.clone());
            }
            if let Some(n) = cs.nodegroups.get_mut(ng) {
                n.status = "UPDATING".into();
                n.modified_at = epoch_now();
            }
            cs.updates.push(u.clone());
            Ok((u, true))
        })?;
        if fresh {
            self.schedule(cluster, &update.id, self.timings.nodegroup_config);
        }
        Ok(json!({"update": update_json(&update)}))
    }

    fn schedule(self: &Arc<Self>, cluster: &str, id: &str, after: Duration) {
        let me = Arc::clone(self);
        let (cluster, id) = (cluster.to_string(), id.to_string());
        // Without a runtime (plain unit tests) the update stays InProgress.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                me.clock.sleep(after).await;
                if let Err(e) = me.complete_update(&cluster, &id, Ok(())) {
                    tracing::warn!("completing update {id}: {e}");
                }
            });
        }
    }

    /// Finish an update: `Ok` makes it Successful and applies its effect,
    /// `Err(errors)` makes it Failed with those `ErrorDetail`s.
    pub fn complete_update(&self, cluster: &str, id: &str, outcome: Result<(), Vec<Value>>) -> Result<(), EksError> {
        let (update, c) = self.with_cluster(cluster, |cs| {
            let i = cs
                .updates
                .iter()
                .position(|u| u.id == id)
                .ok_or_else(|| EksError::not_found(format!("No update found for ID: {id}")))?;
            if cs.updates[i].status != "InProgress" {
                return Ok((None, cs.cluster.clone()));
            }
            let now = epoch_now();
            let u = &mut cs.updates[i];
            match &outcome {
                Ok(()) => u.status = "Successful".into(),
                Err(errors) => {
                    u.status = "Failed".into();
                    u.errors = errors.clone();
                }
            }
            let u = u.clone();
            match (&u.target, &u.apply) {
                (
                    UpdateTarget::Addon(name),
                    UpdateEffect::Addon {
                        version,
                        configuration_values,
                    },
                ) => {
                    if let Some(a) = cs.addons.get_mut(name) {
                        a.modified_at = now;
                        if outcome.is_ok() {
                            a.version = version.clone();
                            if let Some(cv) = configuration_values {
                                a.configuration_values = (!cv.trim().is_empty()).then(|| cv.clone());
                            }
                            a.status = "ACTIVE".into();
                        } else {
                            a.status = "UPDATE_FAILED".into();
                        }
                    }
                }
                (UpdateTarget::Nodegroup(name), effect) => {
                    if let Some(n) = cs.nodegroups.get_mut(name) {
                        n.modified_at = now;
                        n.status = "ACTIVE".into();
                        if outcome.is_ok() {
                            apply_nodegroup_effect(n, effect);
                        }
                    }
                }
                _ => {}
            }
            Ok((Some(u), cs.cluster.clone()))
        })?;
        if let (Some(u), Ok(())) = (update, outcome)
            && let UpdateTarget::Addon(name) = &u.target
        {
            let addon = self.addon(cluster, name);
            if let Some(a) = addon {
                self.apply_addon_to_cluster(&c, &a);
            }
        }
        Ok(())
    }

    /// Make the cluster's workloads reflect an add-on's version and
    /// configuration (what the EKS add-on manager's apply does).
    pub fn apply_addon_to_cluster(&self, c: &Cluster, a: &Addon) {
        let reg = ecr_registry(&self.region);
        let config = a
            .configuration_values
            .as_deref()
            .and_then(|t| schema::parse_configuration(t).ok())
            .unwrap_or(json!({}));
        let result = match a.name.as_str() {
            "vpc-cni" => {
                let env = aws_node_env(&vpc_cni_default_env(&c.name, &c.vpc_id, &a.version), &config);
                let image = format!("{reg}/amazon-k8s-cni:{}", a.version);
                let init_image = format!("{reg}/amazon-k8s-cni-init:{}", a.version);
                self.mutate_and_roll(DAEMONSET, "aws-node", true, |ds| {
                    set_container(ds, "containers", "aws-node", |c| {
                        c["env"] = json!(env);
                        c["image"] = json!(image);
                    });
                    set_container(ds, "initContainers", "aws-vpc-cni-init", |c| {
                        c["image"] = json!(init_image);
                    });
                })
            }
            "kube-proxy" => {
                let tag = a.version.replacen("-eksbuild", "-minimal-eksbuild", 1);
                let image = format!("{reg}/eks/kube-proxy:{tag}");
                self.mutate_and_roll(DAEMONSET, "kube-proxy", true, |ds| {
                    set_container(ds, "containers", "kube-proxy", |c| c["image"] = json!(image));
                })
            }
            "coredns" => {
                let image = format!("{reg}/eks/coredns:{}", a.version);
                let replicas = config.get("replicaCount").and_then(Value::as_i64);
                self.mutate_and_roll(DEPLOYMENT, "coredns", false, |d| {
                    set_container(d, "containers", "coredns", |c| c["image"] = json!(image));
                    if let Some(r) = replicas {
                        d["spec"]["replicas"] = json!(r);
                    }
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!("applying add-on {} to the cluster: {e}", a.name);
        }
    }

    fn mutate_and_roll(
        &self,
        rt: usize,
        name: &str,
        daemonset: bool,
        f: impl FnOnce(&mut Value),
    ) -> Result<(), crate::kube::ApiError> {
        let api = self.store.dyn_api(rt);
        let mut cur = api.get("kube-system", name)?;
        f(&mut cur);
        api.replace(cur)?;
        if daemonset {
            crate::workloads::rollout_daemonset(&self.store, "kube-system", name)?;
        }
        Ok(())
    }
}

/// Change the named container of a workload's pod template.
fn set_container(obj: &mut Value, list: &str, name: &str, f: impl FnOnce(&mut Value)) {
    if let Some(cs) = obj
        .pointer_mut(&format!("/spec/template/spec/{list}"))
        .and_then(Value::as_array_mut)
        && let Some(c) = cs
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
    {
        f(c);
    }
}

fn apply_nodegroup_effect(n: &mut Nodegroup, effect: &UpdateEffect) {
    match effect {
        UpdateEffect::NodegroupVersion {
            launch_template_version,
            release_version,
            version,
            ..
        } => {
            if let (Some(v), Some(lt)) = (launch_template_version, n.launch_template.as_mut()) {
                lt.version = v.clone();
            }
            if let Some(r) = release_version {
                n.release_version = r.clone();
            }
            if let Some(v) = version {
                n.version = v.clone();
            }
        }
        UpdateEffect::NodegroupConfig {
            scaling,
            add_labels,
            remove_labels,
            max_unavailable,
        } => {
            if let Some((min, max, desired)) = scaling {
                n.min_size = *min;
                n.max_size = *max;
                n.desired_size = *desired;
            }
            for (k, v) in add_labels {
                n.labels.insert(k.clone(), v.clone());
            }
            for k in remove_labels {
                n.labels.remove(k);
            }
            if let Some(m) = max_unavailable {
                n.max_unavailable = *m;
            }
        }
        UpdateEffect::Addon { .. } => {}
    }
}

fn with_next(mut v: Value, next: Option<String>) -> Value {
    if let Some(n) = next {
        v["nextToken"] = json!(n);
    }
    v
}

fn tags_json(t: &BTreeMap<String, String>) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>())
}

pub fn cluster_json(c: &Cluster) -> Value {
    json!({
        "name": c.name,
        "arn": c.arn,
        "createdAt": c.created_at,
        "version": c.version,
        "endpoint": c.endpoint,
        "roleArn": c.role_arn,
        "resourcesVpcConfig": {
            "subnetIds": c.subnet_ids,
            "securityGroupIds": c.security_group_ids,
            "clusterSecurityGroupId": c.cluster_security_group_id,
            "vpcId": c.vpc_id,
            "endpointPublicAccess": true,
            "endpointPrivateAccess": true,
            "publicAccessCidrs": ["0.0.0.0/0"],
        },
        "kubernetesNetworkConfig": {
            "serviceIpv4Cidr": c.service_ipv4_cidr,
            "ipFamily": c.ip_family,
            "elasticLoadBalancing": {"enabled": c.auto_mode},
        },
        "logging": {"clusterLogging": [{"types": ["api", "audit", "authenticator", "controllerManager", "scheduler"], "enabled": false}]},
        "identity": {"oidc": {"issuer": c.oidc_issuer}},
        "status": "ACTIVE",
        "certificateAuthority": {"data": c.certificate_authority},
        "platformVersion": c.platform_version,
        "tags": tags_json(&c.tags),
        "health": {"issues": []},
        "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP"},
        "upgradePolicy": {"supportType": "STANDARD"},
        "computeConfig": {"enabled": c.auto_mode},
        "storageConfig": {"blockStorage": {"enabled": c.auto_mode}},
    })
}

pub fn nodegroup_json(cluster: &str, n: &Nodegroup) -> Value {
    let mut v = json!({
        "nodegroupName": n.name,
        "nodegroupArn": n.arn,
        "clusterName": cluster,
        "version": n.version,
        "releaseVersion": n.release_version,
        "createdAt": n.created_at,
        "modifiedAt": n.modified_at,
        "status": n.status,
        "capacityType": n.capacity_type,
        "scalingConfig": {"minSize": n.min_size, "maxSize": n.max_size, "desiredSize": n.desired_size},
        "instanceTypes": n.instance_types,
        "subnets": n.subnets,
        "amiType": n.ami_type,
        "nodeRole": n.node_role,
        "labels": tags_json(&n.labels),
        "resources": {"autoScalingGroups": [{"name": n.asg_name}]},
        "health": {"issues": []},
        "updateConfig": {"maxUnavailable": n.max_unavailable},
        "tags": tags_json(&n.tags),
    });
    if !n.taints.is_empty() {
        v["taints"] = json!(n.taints);
    }
    if let Some(lt) = &n.launch_template {
        v["launchTemplate"] = json!({"name": lt.name, "version": lt.version, "id": lt.id});
    } else {
        v["diskSize"] = json!(20);
    }
    v
}

pub fn addon_json(cluster: &str, a: &Addon) -> Value {
    let mut v = json!({
        "addonName": a.name,
        "clusterName": cluster,
        "status": a.status,
        "addonVersion": a.version,
        "health": {"issues": []},
        "addonArn": a.arn,
        "createdAt": a.created_at,
        "modifiedAt": a.modified_at,
        "tags": {},
        "podIdentityAssociations": [],
    });
    if let Some(c) = &a.configuration_values {
        v["configurationValues"] = json!(c);
    }
    if let Some(r) = &a.service_account_role_arn {
        v["serviceAccountRoleArn"] = json!(r);
    }
    v
}

pub fn update_json(u: &Update) -> Value {
    json!({
        "id": u.id,
        "status": u.status,
        "type": u.kind,
        "params": u.params.iter().map(|(t, v)| json!({"type": t, "value": v})).collect::<Vec<_>>(),
        "createdAt": u.created_at,
        "errors": u.errors,
    })
}
