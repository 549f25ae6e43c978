//! The EKS calls podnet makes, behind the narrow [`EksApi`] trait, with
//! podnet's small models of clusters, managed node groups, addons and
//! updates. [`SdkEks`] implements it with aws-sdk-eks.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_eks::Client;
use aws_sdk_eks::types::{LaunchTemplateSpecification, ResolveConflicts};
use serde::{Deserialize, Serialize};

use super::error::{AwsError, from_sdk};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub version: String,
    pub status: String,
    pub endpoint: Option<String>,
    /// `certificateAuthority.data`: base64 of the cluster CA's PEM.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub cluster_security_group_id: Option<String>,
    pub security_group_ids: Vec<String>,
    /// `ipv4` or `ipv6`.
    pub ip_family: String,
    pub service_ipv4_cidr: Option<String>,
    /// EKS Auto Mode (`computeConfig.enabled`).
    pub auto_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupInfo {
    pub name: String,
    pub status: String,
    pub version: Option<String>,
    pub release_version: Option<String>,
    pub instance_types: Vec<String>,
    pub ami_type: Option<String>,
    pub capacity_type: Option<String>,
    pub subnets: Vec<String>,
    pub min_size: i32,
    pub max_size: i32,
    pub desired_size: i32,
    pub launch_template: Option<LaunchTemplateRef>,
    pub labels: BTreeMap<String, String>,
    pub autoscaling_groups: Vec<String>,
    /// `nodegroupArn` (ends in an id), what IAM authorizes the node
    /// group's calls against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub max_unavailable: Option<i32>,
    pub max_unavailable_percentage: Option<i32>,
}

impl NodegroupInfo {
    /// A Windows AMI type (`WINDOWS_CORE_2022_x86_64`, …).
    pub fn is_windows(&self) -> bool {
        self.ami_type.as_deref().is_some_and(|t| t.starts_with("WINDOWS_"))
    }

    /// A custom AMI (`CUSTOM` AMI type) means EKS does not compute max pods.
    pub fn uses_custom_ami(&self) -> bool {
        self.ami_type.as_deref() == Some("CUSTOM")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonInfo {
    pub name: String,
    pub version: String,
    pub status: String,
    /// The JSON string EKS stores, verbatim.
    pub configuration_values: Option<String>,
    /// `addonArn` (ends in an id), what IAM authorizes the add-on's calls
    /// against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateError {
    pub code: String,
    pub message: String,
    pub resource_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateInfo {
    pub id: String,
    /// `InProgress`, `Failed`, `Cancelled`, `Successful`.
    pub status: String,
    pub update_type: String,
    pub params: Vec<(String, String)>,
    pub errors: Vec<UpdateError>,
}

impl UpdateInfo {
    pub fn is_done(&self) -> bool {
        self.status != "InProgress"
    }
}

/// An `UpdateAddon` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonUpdate {
    pub version: Option<String>,
    pub configuration_values: Option<String>,
    /// `NONE`, `OVERWRITE`, `PRESERVE`.
    pub resolve_conflicts: String,
    pub client_request_token: String,
}

/// The EKS calls podnet makes.
#[async_trait]
pub trait EksApi: Send + Sync {
    async fn describe_cluster(&self, name: &str) -> Result<ClusterInfo, AwsError>;
    async fn list_nodegroups(&self, cluster: &str) -> Result<Vec<String>, AwsError>;
    async fn describe_nodegroup(&self, cluster: &str, nodegroup: &str) -> Result<NodegroupInfo, AwsError>;
    /// `None` when the cluster has no such addon (a self-managed CNI).
    async fn describe_addon(&self, cluster: &str, addon: &str) -> Result<Option<AddonInfo>, AwsError>;
    async fn update_addon(&self, cluster: &str, addon: &str, update: &AddonUpdate) -> Result<UpdateInfo, AwsError>;
    async fn describe_update(
        &self,
        cluster: &str,
        update_id: &str,
        nodegroup: Option<&str>,
        addon: Option<&str>,
    ) -> Result<UpdateInfo, AwsError>;
    async fn update_nodegroup_version(
        &self,
        cluster: &str,
        nodegroup: &str,
        launch_template: Option<&LaunchTemplateRef>,
        force: bool,
        client_request_token: &str,
    ) -> Result<UpdateInfo, AwsError>;
}

/// [`EksApi`] over aws-sdk-eks.
#[derive(Clone)]
pub struct SdkEks {
    client: Client,
}

impl SdkEks {
    pub fn new(client: Client) -> Self {
        SdkEks { client }
    }
}

fn broken(op: &'static str, what: &str) -> AwsError {
    AwsError {
        class: crate::error_class::ErrorClass::Failed,
        service: "eks",
        operation: op,
        resource: None,
        code: None,
        message: format!("the answer lacks {what}"),
        status: None,
    }
}

fn update_of(u: &aws_sdk_eks::types::Update) -> UpdateInfo {
    UpdateInfo {
        id: u.id().unwrap_or_default().to_string(),
        status: u.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
        update_type: u.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        params: u
            .params()
            .iter()
            .map(|p| {
                (
                    p.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    p.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        errors: u
            .errors()
            .iter()
            .map(|e| UpdateError {
                code: e.error_code().map(|c| c.as_str().to_string()).unwrap_or_default(),
                message: e.error_message().unwrap_or_default().to_string(),
                resource_ids: e.resource_ids().to_vec(),
            })
            .collect(),
    }
}

#[async_trait]
impl EksApi for SdkEks {
    async fn describe_cluster(&self, name: &str) -> Result<ClusterInfo, AwsError> {
        const OP: &str = "DescribeCluster";
        let out = self
            .client
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| from_sdk("eks", OP, Some(name.to_string()), e))?;
        let c = out.cluster().ok_or_else(|| broken(OP, "cluster"))?;
        let vpc = c
            .resources_vpc_config()
            .ok_or_else(|| broken(OP, "resourcesVpcConfig"))?;
        let net = c.kubernetes_network_config();
        Ok(ClusterInfo {
            name: c.name().unwrap_or(name).to_string(),
            version: c.version().unwrap_or_default().to_string(),
            status: c.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            endpoint: c.endpoint().map(str::to_string),
            certificate_authority: c.certificate_authority().and_then(|a| a.data()).map(str::to_string),
            vpc_id: vpc.vpc_id().ok_or_else(|| broken(OP, "vpcId"))?.to_string(),
            subnet_ids: vpc.subnet_ids().to_vec(),
            cluster_security_group_id: vpc.cluster_security_group_id().map(str::to_string),
            security_group_ids: vpc.security_group_ids().to_vec(),
            ip_family: net
                .and_then(|n| n.ip_family())
                .map(|f| f.as_str().to_string())
                .unwrap_or_else(|| "ipv4".into()),
            service_ipv4_cidr: net.and_then(|n| n.service_ipv4_cidr()).map(str::to_string),
            auto_mode: c.compute_config().and_then(|cc| cc.enabled()).unwrap_or(false),
        })
    }

    async fn list_nodegroups(&self, cluster: &str) -> Result<Vec<String>, AwsError> {
        const OP: &str = "ListNodegroups";
        let mut pages = self
            .client
            .list_nodegroups()
            .cluster_name(cluster)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("eks", OP, Some(cluster.to_string()), e))?;
            out.extend(page.nodegroups().iter().cloned());
        }
        Ok(out)
    }

    async fn describe_nodegroup(&self, cluster: &str, nodegroup: &str) -> Result<NodegroupInfo, AwsError> {
        const OP: &str = "DescribeNodegroup";
        let out = self
            .client
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .send()
            .await
            .map_err(|e| from_sdk("eks", OP, Some(nodegroup.to_string()), e))?;
        let n = out.nodegroup().ok_or_else(|| broken(OP, "nodegroup"))?;
        let scaling = n.scaling_config();
        Ok(NodegroupInfo {
            name: n.nodegroup_name().unwrap_or(nodegroup).to_string(),
            status: n.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            version: n.version().map(str::to_string),
            release_version: n.release_version().map(str::to_string),
            instance_types: n.instance_types().to_vec(),
            ami_type: n.ami_type().map(|a| a.as_str().to_string()),
            capacity_type: n.capacity_type().map(|c| c.as_str().to_string()),
            subnets: n.subnets().to_vec(),
            min_size: scaling.and_then(|s| s.min_size()).unwrap_or(0),
            max_size: scaling.and_then(|s| s.max_size()).unwrap_or(0),
            desired_size: scaling.and_then(|s| s.desired_size()).unwrap_or(0),
            launch_template: n.launch_template().map(|lt| LaunchTemplateRef {
                id: lt.id().map(str::to_string),
                name: lt.name().map(str::to_string),
                version: lt.version().map(str::to_string),
            }),
            labels: n
                .labels()
                .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            autoscaling_groups: n
                .resources()
                .map(|r| {
                    r.auto_scaling_groups()
                        .iter()
                        .filter_map(|g| g.name().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            max_unavailable: n.update_config().and_then(|u| u.max_unavailable()),
            max_unavailable_percentage: n.update_config().and_then(|u| u.max_unavailable_percentage()),
            arn: n.nodegroup_arn().map(str::to_string),
        })
    }

    async fn describe_addon(&self, cluster: &str, addon: &str) -> Result<Option<AddonInfo>, AwsError> {
        const OP: &str = "DescribeAddon";
        let out = match self
            .client
            .describe_addon()
            .cluster_name(cluster)
            .addon_name(addon)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let e = from_sdk("eks", OP, Some(addon.to_string()), e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let a = out.addon().ok_or_else(|| broken(OP, "addon"))?;
        Ok(Some(AddonInfo {
            name: a.addon_name().unwrap_or(addon).to_string(),
            version: a.addon_version().unwrap_or_default().to_string(),
            status: a.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            configuration_values: a.configuration_values().map(str::to_string),
            arn: a.addon_arn().map(str::to_string),
        }))
    }

    async fn update_addon(&self, cluster: &str, addon: &str, update: &AddonUpdate) -> Result<UpdateInfo, AwsError> {
        const OP: &str = "UpdateAddon";
        let out = self
            .client
            .update_addon()
            .cluster_name(cluster)
            .addon_name(addon)
            .set_addon_version(update.version.clone())
            .set_configuration_values(update.configuration_values.clone())
            .resolve_conflicts(ResolveConflicts::from(update.resolve_conflicts.as_str()))
            .client_request_token(&update.client_request_token)
            .send()
            .await
            .map_err(|e| from_sdk("eks", OP, Some(addon.to_string()), e))?;
        Ok(update_of(out.update().ok_or_else(|| broken(OP, "update"))?))
    }

    async fn describe_update(
        &self,
        cluster: &str,
        update_id: &str,
        nodegroup: Option<&str>,
        addon: Option<&str>,
    ) -> Result<UpdateInfo, AwsError> {
        const OP: &str = "DescribeUpdate";
        let out = self
            .client
            .describe_update()
            .name(cluster)
            .update_id(update_id)
            .set_nodegroup_name(nodegroup.map(str::to_string))
            .set_addon_name(addon.map(str::to_string))
            .send()
            .await
            .map_err(|e| from_sdk("eks", OP, Some(update_id.to_string()), e))?;
        Ok(update_of(out.update().ok_or_else(|| broken(OP, "update"))?))
    }

    async fn update_nodegroup_version(
        &self,
        cluster: &str,
        nodegroup: &str,
        launch_template: Option<&LaunchTemplateRef>,
        force: bool,
        client_request_token: &str,
    ) -> Result<UpdateInfo, AwsError> {
        const OP: &str = "UpdateNodegroupVersion";
        let lt = launch_template.map(|lt| {
            LaunchTemplateSpecification::builder()
                .set_id(lt.id.clone())
                .set_name(if lt.id.is_some() { None } else { lt.name.clone() })
                .set_version(lt.version.clone())
                .build()
        });
        let out = self
            .client
            .update_nodegroup_version()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .set_launch_template(lt)
            .force(force)
            .client_request_token(client_request_token)
            .send()
            .await
            .map_err(|e| from_sdk("eks", OP, Some(nodegroup.to_string()), e))?;
        Ok(update_of(out.update().ok_or_else(|| broken(OP, "update"))?))
    }
}
