//! The sandbox's Amazon EC2 Auto Scaling, behind `AWS_ENDPOINT_URL_AUTOSCALING`:
//! the groups of self-managed node groups (eksctl's unmanaged groups,
//! terraform-aws-eks `self_managed_node_groups`), each on a launch template
//! in moto. It serves the calls a node migration makes —
//! `DescribeAutoScalingGroups`, `DescribeAutoScalingInstances`,
//! `UpdateAutoScalingGroup`, `SetDesiredCapacity`,
//! `TerminateInstanceInAutoScalingGroup` — with the service's validation
//! ([`model`]) and wire shapes ([`http`]). moto has an Auto Scaling too, but
//! it launches instances at addresses of its own choosing; here instances
//! are launched by the sandbox's controller (`crate::controllers::autoscaling`)
//! through the same IPAM as every other node, from the launch template
//! version the group names at that moment.

pub mod http;
pub mod model;

pub use model::{Group, Groups, Instance, Lifecycle, TemplateSpec};
