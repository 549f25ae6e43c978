//! Discovery: one read-only pass over the cluster's AWS and Kubernetes state
//! (DescribeCluster first for the VPC, then every independent read at once),
//! and the questions later stages ask of it: which subnets hold nodes, which
//! route table a subnet uses, what the VPC CNI is configured to do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::AwsClients;
use crate::aws::autoscaling::AsgInfo;
use crate::aws::ec2::{RouteTableInfo, SecurityGroupInfo, SubnetInfo, VpcEndpointInfo, VpcInfo};
use crate::aws::eks::{AddonInfo, ClusterInfo, LaunchTemplateRef, NodegroupInfo};
use crate::aws::error::AwsError;
use crate::capacity::{CniVersion, InstanceInfo, InstanceTable};
use crate::engine::Observer;
use crate::k8s::KubeError;
use crate::k8s::snapshot::{self, KarpenterHint, KubeSnapshot};
use crate::spec::model::SelfManagedPolicy;
use crate::spec::{OWNER_TAG, Spec};

pub const VPC_CNI_ADDON: &str = "vpc-cni";
pub const CUSTOM_NETWORK_ENV: &str = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG";
pub const ENI_CONFIG_LABEL_ENV: &str = "ENI_CONFIG_LABEL_DEF";
pub const ENI_CONFIG_ANNOTATION_ENV: &str = "ENI_CONFIG_ANNOTATION_DEF";
pub const PREFIX_DELEGATION_ENV: &str = "ENABLE_PREFIX_DELEGATION";
pub const SUBNET_DISCOVERY_ENV: &str = "ENABLE_SUBNET_DISCOVERY";

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl DiscoveryError {
    /// Discovery runs before anything is changed or journaled, so the next
    /// command is the one that was run, never `podnet resume`.
    pub fn hint(&self) -> String {
        let fix = match self {
            DiscoveryError::Aws(e) => e.fix(),
            DiscoveryError::Kube(e) => e.fix(),
        };
        format!("{fix}; {}", crate::engine::NOTHING_SAVED)
    }
}

/// Everything podnet read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    pub cluster: ClusterInfo,
    pub vpc: VpcInfo,
    pub subnets: Vec<SubnetInfo>,
    pub route_tables: Vec<RouteTableInfo>,
    pub security_groups: Vec<SecurityGroupInfo>,
    pub endpoints: Vec<VpcEndpointInfo>,
    pub nodegroups: Vec<NodegroupInfo>,
    pub addon: Option<AddonInfo>,
    pub instance_types: BTreeMap<String, InstanceInfo>,
    /// Instance types EC2 did not describe, filled from the embedded table.
    pub instance_types_from_table: Vec<String>,
    pub kube: KubeSnapshot,
    /// Node group → its launch template version's user data, for the
    /// custom-AMI groups (EKS writes max pods for the others).
    #[serde(default)]
    pub launch_template_user_data: BTreeMap<String, LaunchTemplateUserData>,
    /// Self-managed nodes' Auto Scaling groups (read only when the plan
    /// replaces self-managed nodes and there are some).
    #[serde(default, skip_serializing_if = "SelfManagedDiscovery::is_empty")]
    pub self_managed: SelfManagedDiscovery,
}

/// What Auto Scaling says about the self-managed nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfManagedDiscovery {
    /// Node → the Auto Scaling group of its instance (nodes in none are absent).
    pub node_groups: BTreeMap<String, String>,
    pub groups: Vec<AsgInfo>,
    /// Group → its launch template version's user data.
    pub user_data: BTreeMap<String, LaunchTemplateUserData>,
    /// Why Auto Scaling could not be read: the plan refuses the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SelfManagedDiscovery {
    pub fn is_empty(&self) -> bool {
        self.node_groups.is_empty() && self.groups.is_empty() && self.error.is_none()
    }

    pub fn group(&self, name: &str) -> Option<&AsgInfo> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// The EC2 instance id in a node's `spec.providerID`
/// (`aws:///<zone>/<instance-id>`).
pub fn instance_id(provider_id: &str) -> Option<&str> {
    provider_id
        .strip_prefix("aws://")
        .and_then(|rest| rest.rsplit('/').next())
        .filter(|id| id.starts_with("i-"))
}

/// Reads one launch template version's user data; a failure is recorded,
/// not raised (the plan refuses that group, not the whole plan).
async fn read_user_data(aws: &AwsClients, lt: &LaunchTemplateRef) -> LaunchTemplateUserData {
    let version = lt.version.clone().unwrap_or_else(|| "$Default".into());
    let read = async {
        let id = match (&lt.id, &lt.name) {
            (Some(id), _) => id.clone(),
            (None, Some(name)) => aws.ec2.launch_template_id(name).await?,
            (None, None) => return Ok(None),
        };
        aws.ec2.launch_template_user_data(&id, &version).await.map(Some)
    };
    match read.await {
        Ok(None) => LaunchTemplateUserData {
            version,
            base64: None,
            instance_type: None,
            error: Some("the launch template has no id or name".into()),
        },
        Ok(Some(v)) => LaunchTemplateUserData {
            version: v.version,
            base64: v.user_data,
            instance_type: v.instance_type,
            error: None,
        },
        Err(e) => LaunchTemplateUserData {
            version,
            base64: None,
            instance_type: None,
            error: Some(e.to_string()),
        },
    }
}

/// The Auto Scaling groups of the self-managed Linux nodes on the VPC CNI,
/// and their launch templates' user data.
async fn self_managed_groups(aws: &AwsClients, spec: &Spec, kube: &KubeSnapshot) -> SelfManagedDiscovery {
    let mut out = SelfManagedDiscovery::default();
    if spec.replacement.self_managed != SelfManagedPolicy::Replace {
        return out;
    }
    let nodes: BTreeMap<String, String> = kube
        .nodes
        .iter()
        .filter(|n| crate::planner::node_kinds::is_self_managed(n) && n.os != "windows")
        .filter_map(|n| Some((instance_id(n.provider_id.as_deref()?)?.to_string(), n.name.clone())))
        .collect();
    if nodes.is_empty() {
        return out;
    }
    let ids: Vec<String> = nodes.keys().cloned().collect();
    let read = async {
        let members = aws.autoscaling.instance_groups(&ids).await?;
        let names: BTreeSet<String> = members.iter().map(|m| m.group.clone()).collect();
        let groups = aws
            .autoscaling
            .describe_groups(&names.into_iter().collect::<Vec<_>>())
            .await?;
        Ok::<_, AwsError>((members, groups))
    };
    let (members, groups) = match read.await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    for m in members {
        if let Some(node) = nodes.get(&m.instance_id) {
            out.node_groups.insert(node.clone(), m.group);
        }
    }
    for g in &groups {
        if let Some(lt) = &g.launch_template {
            out.user_data.insert(g.name.clone(), read_user_data(aws, lt).await);
        }
    }
    out.groups = groups;
    out
}

/// A launch template version's user data as EC2 keeps it, or why podnet
/// could not read it (the plan refuses that group, not the whole plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateUserData {
    /// The version, by number.
    pub version: String,
    pub base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The launch template version of each selected custom-AMI node group.
async fn custom_ami_user_data(
    aws: &AwsClients,
    spec: &Spec,
    nodegroups: &[NodegroupInfo],
) -> BTreeMap<String, LaunchTemplateUserData> {
    let mut out = BTreeMap::new();
    let groups = nodegroups
        .iter()
        .filter(|g| g.uses_custom_ami() && spec.replacement.node_groups.selects(&g.name));
    for g in groups {
        let Some(lt) = &g.launch_template else { continue };
        out.insert(g.name.clone(), read_user_data(aws, lt).await);
    }
    out
}

/// Reads the cluster. `progress` hears what is being read (as a phase).
pub async fn discover(
    aws: &AwsClients,
    kube: &kube::Client,
    spec: &Spec,
    progress: &dyn Observer,
) -> Result<Discovery, DiscoveryError> {
    let progress = |m: &str| progress.phase(m);
    progress("reading the EKS cluster");
    let cluster = aws.eks.describe_cluster(&spec.cluster).await?;
    let vpc_id = cluster.vpc_id.clone();
    progress("reading the VPC, node groups, vpc-cni addon and Kubernetes objects");
    let hint = KarpenterHint {
        namespace: spec.karpenter.namespace.clone(),
        deployment: spec.karpenter.deployment.clone(),
    };
    let nodegroups = async {
        let names = aws.eks.list_nodegroups(&spec.cluster).await?;
        futures::future::try_join_all(names.iter().map(|n| aws.eks.describe_nodegroup(&spec.cluster, n))).await
    };
    let kube_snapshot = async { snapshot::take(kube, &hint).await.map_err(DiscoveryError::from) };
    let (vpc, subnets, route_tables, security_groups, endpoints, nodegroups, addon, kube) = tokio::try_join!(
        async { aws.ec2.describe_vpc(&vpc_id).await.map_err(DiscoveryError::from) },
        async { aws.ec2.describe_subnets(&vpc_id).await.map_err(DiscoveryError::from) },
        async {
            aws.ec2
                .describe_route_tables(&vpc_id)
                .await
                .map_err(DiscoveryError::from)
        },
        async {
            aws.ec2
                .describe_security_groups(&vpc_id)
                .await
                .map_err(DiscoveryError::from)
        },
        async {
            aws.ec2
                .describe_vpc_endpoints(&vpc_id)
                .await
                .map_err(DiscoveryError::from)
        },
        async { nodegroups.await.map_err(DiscoveryError::from) },
        async {
            aws.eks
                .describe_addon(&spec.cluster, VPC_CNI_ADDON)
                .await
                .map_err(DiscoveryError::from)
        },
        kube_snapshot,
    )?;

    // Every instance type that runs or may run nodes.
    let mut types: BTreeSet<String> = BTreeSet::new();
    types.extend(kube.nodes.iter().filter_map(|n| n.instance_type.clone()));
    types.extend(nodegroups.iter().flat_map(|g| g.instance_types.iter().cloned()));
    if let Some(k) = &kube.karpenter {
        types.extend(k.nodepools.iter().flat_map(|p| p.instance_types()));
    }
    let launch_template_user_data = custom_ami_user_data(aws, spec, &nodegroups).await;
    let self_managed = self_managed_groups(aws, spec, &kube).await;
    types.extend(self_managed.user_data.values().filter_map(|l| l.instance_type.clone()));
    types.extend(
        launch_template_user_data
            .values()
            .filter_map(|l| l.instance_type.clone()),
    );
    let types: Vec<String> = types.into_iter().collect();
    progress("reading instance types");
    let mut instance_types = BTreeMap::new();
    let mut instance_types_from_table = Vec::new();
    if !types.is_empty() {
        match aws.ec2.describe_instance_types(&types).await {
            Ok(infos) => {
                for i in infos {
                    instance_types.insert(i.instance_type.clone(), i);
                }
            }
            // One unknown type (a typo in a NodePool) must not hide the rest.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        for t in &types {
            if !instance_types.contains_key(t)
                && let Some(i) = InstanceTable::embedded().get(t)
            {
                instance_types.insert(t.clone(), i.clone());
                instance_types_from_table.push(t.clone());
            }
        }
    }
    Ok(Discovery {
        cluster,
        vpc,
        subnets,
        route_tables,
        security_groups,
        endpoints,
        nodegroups,
        addon,
        instance_types,
        instance_types_from_table,
        kube,
        launch_template_user_data,
        self_managed,
    })
}

/// How far custom networking is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustomNetworking {
    Off,
    On,
}

impl Discovery {
    /// The vpc-cni addon's configuration values, parsed from JSON or YAML
    /// (`{}` when unset or unreadable: the enable step reports those).
    pub fn addon_config(&self) -> Value {
        crate::aws::addon_config::AddonConfig::parse(
            self.addon.as_ref().and_then(|a| a.configuration_values.as_deref()),
        )
        .map(|c| c.value)
        .unwrap_or_else(|_| Value::Object(Default::default()))
    }

    /// The aws-node env as it will be: the addon's configured env over the
    /// DaemonSet's current env.
    pub fn cni_env(&self) -> BTreeMap<String, String> {
        let mut env = self.kube.aws_node.as_ref().map(|a| a.env.clone()).unwrap_or_default();
        if let Some(cfg) = self.addon_config().get("env").and_then(Value::as_object) {
            for (k, v) in cfg {
                if let Some(s) = v.as_str() {
                    env.insert(k.clone(), s.to_string());
                }
            }
        }
        env
    }

    pub fn cni_env_is_true(&self, key: &str) -> bool {
        self.cni_env().get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn custom_networking(&self) -> CustomNetworking {
        if self.cni_env_is_true(CUSTOM_NETWORK_ENV) {
            CustomNetworking::On
        } else {
            CustomNetworking::Off
        }
    }

    /// The VPC CNI version: the addon's, else the aws-node image tag.
    pub fn cni_version(&self) -> Option<CniVersion> {
        if let Some(a) = &self.addon
            && let Ok(v) = a.version.parse()
        {
            return Some(v);
        }
        let image = self.kube.aws_node.as_ref()?.image.as_ref()?;
        image.rsplit_once(':')?.1.parse().ok()
    }

    pub fn subnet(&self, id: &str) -> Option<&SubnetInfo> {
        self.subnets.iter().find(|s| s.id == id)
    }

    pub fn security_group(&self, id: &str) -> Option<&SecurityGroupInfo> {
        self.security_groups.iter().find(|g| g.id == id)
    }

    pub fn subnet_containing(&self, ip: &str) -> Option<&SubnetInfo> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        self.subnets.iter().find(|s| s.cidr.contains(&ip))
    }

    /// The route table a subnet uses: its explicit association, or the main table.
    pub fn route_table_of(&self, subnet_id: &str) -> Option<&RouteTableInfo> {
        self.route_tables
            .iter()
            .find(|rt| rt.association_for(subnet_id).is_some())
            .or_else(|| self.route_tables.iter().find(|rt| rt.is_main()))
    }

    /// Subnets podnet created (or adopted) as pod subnets of this cluster.
    pub fn is_pod_subnet(&self, s: &SubnetInfo, spec: &Spec) -> bool {
        s.tags.get(OWNER_TAG).is_some_and(|c| c == &spec.cluster) || spec.secondary_cidr.contains(&s.cidr)
    }

    /// The subnets that hold (or may hold) nodes, by AZ: managed node group
    /// subnets, subnets EC2NodeClasses select, and subnets of node IPs. Pod
    /// subnets are never node subnets.
    pub fn node_subnets(&self, spec: &Spec) -> BTreeMap<String, Vec<&SubnetInfo>> {
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for g in &self.nodegroups {
            ids.extend(g.subnets.iter().map(String::as_str));
        }
        if let Some(k) = &self.kube.karpenter {
            for nc in &k.nodeclasses {
                for s in &self.subnets {
                    if selector_terms_select(&nc.subnet_selector_terms, &s.id, &s.tags) {
                        ids.insert(&s.id);
                    }
                }
            }
        }
        for n in &self.kube.nodes {
            if let Some(s) = n.internal_ip.as_deref().and_then(|ip| self.subnet_containing(ip)) {
                ids.insert(&s.id);
            }
        }
        let mut by_az: BTreeMap<String, Vec<&SubnetInfo>> = BTreeMap::new();
        for s in &self.subnets {
            if ids.contains(s.id.as_str()) && !self.is_pod_subnet(s, spec) {
                by_az.entry(s.availability_zone.clone()).or_default().push(s);
            }
        }
        by_az
    }

    /// Nodes per subnet id (by InternalIP).
    pub fn nodes_per_subnet(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for n in &self.kube.nodes {
            if let Some(s) = n.internal_ip.as_deref().and_then(|ip| self.subnet_containing(ip)) {
                *m.entry(s.id.clone()).or_insert(0) += 1;
            }
        }
        m
    }

    /// AZs where nodes run now.
    pub fn node_zones(&self) -> BTreeSet<String> {
        self.kube.nodes.iter().filter_map(|n| n.zone.clone()).collect()
    }
}

/// Karpenter's `subnetSelectorTerms` (or `securityGroupSelectorTerms`): any
/// term matches; within a term, `id` must equal and every tag must match
/// (`*` matches any value).
pub fn selector_terms_select(terms: &[Value], id: &str, tags: &BTreeMap<String, String>) -> bool {
    terms.iter().any(|t| {
        let id_ok = t.get("id").and_then(Value::as_str).is_none_or(|want| want == id);
        let tags_ok = t.get("tags").and_then(Value::as_object).is_none_or(|want| {
            want.iter().all(|(k, v)| match (tags.get(k), v.as_str()) {
                (Some(_), Some("*")) => true,
                (Some(have), Some(v)) => have == v,
                _ => false,
            })
        });
        let has_criteria = t.get("id").is_some() || t.get("tags").is_some();
        has_criteria && id_ok && tags_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn karpenter_selector_terms() {
        let tags: BTreeMap<String, String> = [
            ("karpenter.sh/discovery".to_string(), "demo".to_string()),
            ("Name".into(), "x".into()),
        ]
        .into();
        assert!(selector_terms_select(
            &[json!({"tags": {"karpenter.sh/discovery": "demo"}})],
            "subnet-1",
            &tags
        ));
        assert!(selector_terms_select(
            &[json!({"tags": {"Name": "*"}})],
            "subnet-1",
            &tags
        ));
        assert!(!selector_terms_select(
            &[json!({"tags": {"karpenter.sh/discovery": "other"}})],
            "subnet-1",
            &tags
        ));
        assert!(selector_terms_select(
            &[json!({"id": "subnet-1"})],
            "subnet-1",
            &BTreeMap::new()
        ));
        assert!(!selector_terms_select(&[json!({"id": "subnet-2"})], "subnet-1", &tags));
        assert!(!selector_terms_select(&[json!({})], "subnet-1", &tags));
        assert!(selector_terms_select(
            &[json!({"id": "subnet-9"}), json!({"tags": {"Name": "x"}})],
            "subnet-1",
            &tags
        ));
    }
}
