//! What an EKS request asks IAM for, per the Service Authorization
//! Reference ("Actions, resources, and condition keys for Amazon EKS"):
//! cluster operations take the cluster's ARN, node group and add-on
//! operations the node group's or add-on's own ARN (which ends in an id, so
//! policies name them `…/nodegroup/CLUSTER/NAME/*`), `DescribeUpdate` the
//! cluster's and, when the update is a node group's or an add-on's, that
//! one's too; the account-wide reads (`ListClusters`,
//! `DescribeAddonVersions`, `DescribeAddonConfiguration`) take `*`.

use std::collections::HashMap;

use serde_json::Value;

use super::{Eks, EksError};
use crate::iam::{Request, Resource};

fn arn_of(v: Result<Value, EksError>, object: &str, field: &str) -> Option<Resource> {
    v.ok()?.get(object)?.get(field)?.as_str().map(Resource::new)
}

/// The IAM request for operation `op` on the route `segs`; `None` when a
/// resource it names does not exist (the operation then answers its own
/// `ResourceNotFoundException`).
pub fn request(eks: &Eks, op: &str, segs: &[&str], q: &HashMap<String, String>) -> Option<Request> {
    let cluster = |c: &str| arn_of(eks.describe_cluster(c), "cluster", "arn");
    let nodegroup = |c: &str, ng: &str| arn_of(eks.describe_nodegroup(c, ng), "nodegroup", "nodegroupArn");
    let addon = |c: &str, a: &str| arn_of(eks.describe_addon(c, a), "addon", "addonArn");
    let resources = match (op, segs) {
        ("ListClusters" | "DescribeAddonVersions" | "DescribeAddonConfiguration", _) => vec![],
        ("DescribeUpdate", [_, c, ..]) => {
            let mut v = vec![cluster(c)?];
            if let Some(ng) = q.get("nodegroupName") {
                v.push(nodegroup(c, ng)?);
            }
            if let Some(a) = q.get("addonName") {
                v.push(addon(c, a)?);
            }
            v
        }
        ("DescribeNodegroup" | "UpdateNodegroupVersion" | "UpdateNodegroupConfig", [_, c, _, ng, ..]) => {
            vec![nodegroup(c, ng)?]
        }
        ("DescribeAddon" | "UpdateAddon", [_, c, _, a, ..]) => vec![addon(c, a)?],
        (_, [_, c, ..]) => vec![cluster(c)?],
        _ => vec![],
    };
    Some(Request::new(format!("eks:{op}"), resources))
}
