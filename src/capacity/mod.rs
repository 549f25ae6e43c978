//! Pod capacity: the instance-type facts that bound how many pods a node can
//! run, and the max-pods formulas of the EKS AMIs, EKS managed node groups and
//! Karpenter. Everything here is pure and synchronous; the one network path
//! (`--from-ec2`) fetches the same facts through [`crate::aws`] and feeds them
//! to the same formulas.

pub mod instances;
pub mod max_pods;

pub use instances::{InstanceInfo, InstanceTable, UnknownInstanceType};
pub use max_pods::{CniSettings, CniVersion, MaxPods, karpenter_max_pods, max_pods};
