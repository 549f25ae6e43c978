//! A node the seed has planned (its scenario entry, how it was launched,
//! its max pods, its primary ENI) before any object exists: what the node
//! seeding produces and the workload placement consumes, kept apart from
//! both so neither imports the other.

use crate::scenario::NodeInfo;
use crate::scenario::objects::NodeOrigin;

pub(super) struct Planned {
    pub(super) info: NodeInfo,
    pub(super) origin: NodeOrigin,
    pub(super) max_pods: u32,
    pub(super) created: String,
    pub(super) eni0: String,
}
