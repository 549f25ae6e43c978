//! The Amazon EC2 Auto Scaling calls podnet makes for self-managed node
//! groups, behind the narrow [`AutoScalingApi`] trait: which group each
//! node's instance is in, the groups' launch templates and instances, a
//! group pointed at a new launch template version, and an instance
//! terminated with a replacement (`ShouldDecrementDesiredCapacity=false`:
//! "Amazon EC2 Auto Scaling launches a replacement instance", API
//! Reference, TerminateInstanceInAutoScalingGroup). [`SdkAutoScaling`]
//! implements it with aws-sdk-autoscaling (paginated reads, classified
//! errors); tests substitute their own.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::eks::LaunchTemplateRef;
use super::error::{AwsError, from_sdk};

/// DescribeAutoScalingInstances takes at most 50 ids a call.
const INSTANCE_IDS_PER_CALL: usize = 50;

/// One instance as Auto Scaling sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsgInstance {
    pub instance_id: String,
    pub group: String,
    /// `InService`, `Pending`, `Terminating`, …
    pub lifecycle: String,
    /// The launch template version it was launched from (a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template_version: Option<String>,
}

impl AsgInstance {
    /// Counts toward the group's capacity (not on its way out).
    pub fn is_live(&self) -> bool {
        !self.lifecycle.starts_with("Terminat") && !self.lifecycle.starts_with("Detach")
    }
}

/// An Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsgInfo {
    pub name: String,
    /// The group's own launch template (`None`: a launch configuration or
    /// a mixed instances policy, which podnet does not edit).
    pub launch_template: Option<LaunchTemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_configuration: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mixed_instances_policy: bool,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub instances: Vec<AsgInstance>,
}

impl AsgInfo {
    pub fn live_instances(&self) -> impl Iterator<Item = &AsgInstance> {
        self.instances.iter().filter(|i| i.is_live())
    }
}

/// The Auto Scaling calls podnet makes.
#[async_trait]
pub trait AutoScalingApi: Send + Sync {
    /// The group of each instance that is in one (others are left out).
    async fn instance_groups(&self, instance_ids: &[String]) -> Result<Vec<AsgInstance>, AwsError>;
    async fn describe_groups(&self, names: &[String]) -> Result<Vec<AsgInfo>, AwsError>;
    /// Points the group at a launch template version (new instances only).
    async fn set_launch_template(&self, group: &str, launch_template_id: &str, version: &str) -> Result<(), AwsError>;
    /// Terminates an instance; the group launches its replacement.
    async fn terminate_with_replacement(&self, instance_id: &str) -> Result<(), AwsError>;
}

/// [`AutoScalingApi`] over aws-sdk-autoscaling.
pub struct SdkAutoScaling {
    client: aws_sdk_autoscaling::Client,
}

impl SdkAutoScaling {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        SdkAutoScaling { client }
    }
}

fn template_of(t: Option<&aws_sdk_autoscaling::types::LaunchTemplateSpecification>) -> Option<LaunchTemplateRef> {
    let t = t?;
    Some(LaunchTemplateRef {
        id: t.launch_template_id().map(str::to_string),
        name: t.launch_template_name().map(str::to_string),
        version: t.version().map(str::to_string),
    })
}

#[async_trait]
impl AutoScalingApi for SdkAutoScaling {
    async fn instance_groups(&self, instance_ids: &[String]) -> Result<Vec<AsgInstance>, AwsError> {
        const OP: &str = "DescribeAutoScalingInstances";
        let mut out = Vec::new();
        for chunk in instance_ids.chunks(INSTANCE_IDS_PER_CALL) {
            let mut pages = self
                .client
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| from_sdk("autoscaling", OP, None, e))?;
                for i in page.auto_scaling_instances() {
                    out.push(AsgInstance {
                        instance_id: i.instance_id().unwrap_or_default().to_string(),
                        group: i.auto_scaling_group_name().unwrap_or_default().to_string(),
                        lifecycle: i.lifecycle_state().unwrap_or_default().to_string(),
                        launch_template_version: i.launch_template().and_then(|t| t.version()).map(str::to_string),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn describe_groups(&self, names: &[String]) -> Result<Vec<AsgInfo>, AwsError> {
        const OP: &str = "DescribeAutoScalingGroups";
        let mut out = Vec::new();
        if names.is_empty() {
            return Ok(out);
        }
        let mut pages = self
            .client
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("autoscaling", OP, Some(names.join(", ")), e))?;
            for g in page.auto_scaling_groups() {
                let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
                out.push(AsgInfo {
                    launch_template: template_of(g.launch_template()),
                    launch_configuration: g.launch_configuration_name().map(str::to_string),
                    mixed_instances_policy: g.mixed_instances_policy().is_some(),
                    min_size: g.min_size().unwrap_or(0).max(0) as u32,
                    max_size: g.max_size().unwrap_or(0).max(0) as u32,
                    desired_capacity: g.desired_capacity().unwrap_or(0).max(0) as u32,
                    instances: g
                        .instances()
                        .iter()
                        .map(|i| AsgInstance {
                            instance_id: i.instance_id().unwrap_or_default().to_string(),
                            group: name.clone(),
                            lifecycle: i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                            launch_template_version: i.launch_template().and_then(|t| t.version()).map(str::to_string),
                        })
                        .collect(),
                    name,
                });
            }
        }
        Ok(out)
    }

    async fn set_launch_template(&self, group: &str, launch_template_id: &str, version: &str) -> Result<(), AwsError> {
        // Authorized as ec2:RunInstances on the template too (EC2 Auto
        // Scaling User Guide, launch template permissions).
        const OP: &str = "UpdateAutoScalingGroup";
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(launch_template_id)
                    .version(version)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling", OP, Some(group.to_string()), e))?;
        Ok(())
    }

    async fn terminate_with_replacement(&self, instance_id: &str) -> Result<(), AwsError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        self.client
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling", OP, Some(instance_id.to_string()), e))?;
        Ok(())
    }
}

/// An in-memory Auto Scaling for contract tests: groups as written, each
/// call recorded; a terminated instance goes `Terminating` and a
/// replacement `i-replacement-N` joins `InService` on the group's version.
#[cfg(test)]
#[derive(Default)]
pub struct FakeAutoScaling {
    pub groups: std::sync::Mutex<Vec<AsgInfo>>,
    pub calls: std::sync::Mutex<Vec<String>>,
}

#[cfg(test)]
impl FakeAutoScaling {
    fn record(&self, call: String) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Vec<AsgInfo>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[async_trait]
impl AutoScalingApi for FakeAutoScaling {
    async fn instance_groups(&self, instance_ids: &[String]) -> Result<Vec<AsgInstance>, AwsError> {
        Ok(self
            .groups()
            .iter()
            .flat_map(|g| g.instances.iter())
            .filter(|i| instance_ids.contains(&i.instance_id))
            .cloned()
            .collect())
    }

    async fn describe_groups(&self, names: &[String]) -> Result<Vec<AsgInfo>, AwsError> {
        Ok(self
            .groups()
            .iter()
            .filter(|g| names.contains(&g.name))
            .cloned()
            .collect())
    }

    async fn set_launch_template(&self, group: &str, launch_template_id: &str, version: &str) -> Result<(), AwsError> {
        self.record(format!("UpdateAutoScalingGroup {group} {launch_template_id} {version}"));
        if let Some(g) = self.groups().iter_mut().find(|g| g.name == group) {
            g.launch_template = Some(LaunchTemplateRef {
                id: Some(launch_template_id.to_string()),
                name: None,
                version: Some(version.to_string()),
            });
        }
        Ok(())
    }

    async fn terminate_with_replacement(&self, instance_id: &str) -> Result<(), AwsError> {
        self.record(format!("TerminateInstanceInAutoScalingGroup {instance_id}"));
        let mut groups = self.groups();
        let n = groups.iter().map(|g| g.instances.len()).sum::<usize>();
        for g in groups.iter_mut() {
            if let Some(i) = g.instances.iter_mut().find(|i| i.instance_id == instance_id) {
                i.lifecycle = "Terminating".into();
                let version = g.launch_template.as_ref().and_then(|t| t.version.clone());
                let group = g.name.clone();
                g.instances.push(AsgInstance {
                    instance_id: format!("i-replacement-{n}"),
                    group,
                    lifecycle: "InService".into(),
                    launch_template_version: version,
                });
                return Ok(());
            }
        }
        Err(AwsError {
            class: crate::error_class::ErrorClass::Invalid,
            service: "autoscaling",
            operation: "TerminateInstanceInAutoScalingGroup",
            resource: Some(instance_id.to_string()),
            code: Some("ValidationError".into()),
            message: format!("Instance Id not found - No managed instance found for instance ID: {instance_id}"),
            status: Some(400),
        })
    }
}
