//! What EKS knows about its add-ons independently of any cluster: the
//! supported versions (`DescribeAddonVersions`), their configuration
//! schemas, the ECR registry their images come from, and the aws-node env
//! the vpc-cni add-on installs before and after configuration values.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::schema;

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
