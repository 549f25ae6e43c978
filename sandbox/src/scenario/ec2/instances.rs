//! Node instances in moto: the managed node groups' launch templates (as
//! Terraform's eks module makes them: node security group, IMDSv2 with hop
//! limit 2, nodeadm user data;
//! <https://docs.aws.amazon.com/eks/latest/userguide/launch-templates.html>)
//! and the instances themselves at the addresses the IPAM chose.

use std::net::Ipv4Addr;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateSpecification, RequestLaunchTemplateData,
    ResourceType,
};

use super::common::{SeedError, ec2_err, missing, tags};
use crate::scenario::{NodeGroupSpec, World};

/// The launch template of a managed node group (as Terraform's eks module
/// makes one): node security group, IMDSv2, nodeadm user data — or, for a
/// custom AMI, the image and the scenario's user data.
pub async fn launch_template(c: &Client, w: &World, g: &NodeGroupSpec) -> Result<(String, String), SeedError> {
    use base64::Engine as _;
    let name = format!("{}-20241104021139", g.name);
    let user_data = match &g.user_data {
        Some(text) => base64::engine::general_purpose::STANDARD.encode(text),
        None => "TUlNRS1WZXJzaW9uOiAxLjAKQ29udGVudC1UeXBlOiBtdWx0aXBhcnQvbWl4ZWQ7IGJvdW5kYXJ5PSIvLyIKCi0tLy8KQ29udGVudC1UeXBlOiBhcHBsaWNhdGlvbi9ub2RlLmVrcy5hd3MKCi0tLQphcGlWZXJzaW9uOiBub2RlLmVrcy5hd3MvdjFhbHBoYTEKa2luZDogTm9kZUNvbmZpZwpzcGVjOgogIGNsdXN0ZXI6IHt9Ci0tLy8tLQo=".into(),
    };
    let image = (g.ami_type == "CUSTOM").then(|| super::AMI_ID.to_string());
    let out = c
        .create_launch_template()
        .launch_template_name(&name)
        .version_description("Managed by Terraform")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .set_image_id(image)
                .security_group_ids(w.security_groups.get("node").cloned().unwrap_or_default())
                .user_data(user_data)
                .metadata_options(
                    LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
                        .http_put_response_hop_limit(2)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(tags(ResourceType::LaunchTemplate, &[("Name", &name)]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateLaunchTemplate", e))?;
    let lt = out.launch_template().ok_or_else(|| missing("CreateLaunchTemplate"))?;
    Ok((
        lt.launch_template_id().unwrap_or_default().to_string(),
        lt.latest_version_number().unwrap_or(1).to_string(),
    ))
}

/// The launch template of a self-managed group (as eksctl makes one for an
/// unmanaged group): the AMI, the instance type, the node security group,
/// IMDSv2 and the group's user data.
pub async fn self_managed_template(
    c: &Client,
    w: &World,
    name: &str,
    instance_type: &str,
    user_data: &str,
) -> Result<(String, String), SeedError> {
    use base64::Engine as _;
    let out = c
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(super::AMI_ID)
                .instance_type(InstanceType::from(instance_type))
                .security_group_ids(w.security_groups.get("node").cloned().unwrap_or_default())
                .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
                .metadata_options(
                    LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
                        .http_put_response_hop_limit(2)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(tags(ResourceType::LaunchTemplate, &[("Name", name)]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateLaunchTemplate", e))?;
    let lt = out.launch_template().ok_or_else(|| missing("CreateLaunchTemplate"))?;
    Ok((
        lt.launch_template_id().unwrap_or_default().to_string(),
        lt.latest_version_number().unwrap_or(1).to_string(),
    ))
}

/// What a node needs from EC2.
pub struct NodeLaunch {
    pub zone: String,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub instance_type: String,
    pub tags: Vec<(String, String)>,
    pub launch_template: Option<(String, String)>,
}

/// Launch one instance per node with its chosen private address; returns
/// (instance id, primary ENI id) per node.
pub async fn launch_nodes(c: &Client, w: &World, nodes: &[NodeLaunch]) -> Result<Vec<(String, String)>, SeedError> {
    let node_sg = w.security_groups.get("node").cloned().unwrap_or_default();
    // One at a time: moto answered concurrent RunInstances with an occasional
    // HTTP 500 under load.
    let launches: Vec<_> = nodes
        .iter()
        .map(|n| {
            let kv: Vec<(&str, &str)> = n.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut req = c
                .run_instances()
                .image_id(&w.ami_id)
                .instance_type(InstanceType::from(n.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(&n.subnet_id)
                .private_ip_address(n.ip.to_string())
                .security_group_ids(&node_sg)
                .tag_specifications(tags(ResourceType::Instance, &kv));
            if let Some((id, v)) = &n.launch_template {
                req = req.launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(id)
                        .version(v)
                        .build(),
                );
            }
            async move {
                let out = req.send().await.map_err(|e| ec2_err("RunInstances", e))?;
                let inst = out.instances().first().ok_or_else(|| missing("RunInstances"))?;
                let id = inst.instance_id().ok_or_else(|| missing("RunInstances"))?.to_string();
                let eni = inst
                    .network_interfaces()
                    .first()
                    .and_then(|e| e.network_interface_id())
                    .unwrap_or_default()
                    .to_string();
                Ok::<_, SeedError>((id, eni))
            }
        })
        .collect();
    let mut out = Vec::with_capacity(launches.len());
    for l in launches {
        out.push(l.await?);
    }
    Ok(out)
}
