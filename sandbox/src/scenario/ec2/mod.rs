//! Seeding EC2 through moto's API with aws-sdk-ec2, talking to moto directly
//! (not through the audit proxy, so none of this shows in the call log): the
//! VPC, subnets, gateway, route tables, endpoints, security groups, launch
//! templates, node instances and the ENIs and secondary addresses that hold
//! pod IPs. Every address handed to moto was chosen by the sandbox's IPAM.
//!
//! The steps live in `network`, `security_groups`, `instances` and
//! `addresses`, with what they share in `common`; this module re-exports
//! their public items.

mod addresses;
mod common;
mod instances;
mod network;
mod security_groups;

pub use addresses::{NodeEniPlan, attach_enis, other_tenants, sync_ipam};
pub use common::{AMI_ID, SeedError, fake_id, moto_client};
pub use instances::{NodeLaunch, launch_nodes, launch_template, self_managed_template};
pub use network::network;
