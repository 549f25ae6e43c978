//! The EKS API's JSON renderings of the data model (`cluster`,
//! `nodegroup`, `addon`, `update` objects) and the `maxResults`/`nextToken`
//! paging every List operation shares.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::EksError;
use super::model::{Addon, Cluster, Nodegroup, Update};

pub(super) fn page<T: Clone>(items: &[T], q: &HashMap<String, String>) -> Result<(Vec<T>, Option<String>), EksError> {
    let start = match q.get("nextToken") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| EksError::invalid_parameter("The nextToken is invalid."))?,
        None => 0,
    };
    let max = match q.get("maxResults") {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=100).contains(m))
            .ok_or_else(|| EksError::invalid_parameter("maxResults must be between 1 and 100."))?,
        None => 100,
    };
    let end = (start + max).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    let next = (end < items.len()).then(|| end.to_string());
    Ok((slice, next))
}

pub(super) fn with_next(mut v: Value, next: Option<String>) -> Value {
    if let Some(n) = next {
        v["nextToken"] = json!(n);
    }
    v
}

fn tags_json(t: &BTreeMap<String, String>) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>())
}

pub fn cluster_json(c: &Cluster) -> Value {
    json!({
        "name": c.name,
        "arn": c.arn,
        "createdAt": c.created_at,
        "version": c.version,
        "endpoint": c.endpoint,
        "roleArn": c.role_arn,
        "resourcesVpcConfig": {
            "subnetIds": c.subnet_ids,
            "securityGroupIds": c.security_group_ids,
            "clusterSecurityGroupId": c.cluster_security_group_id,
            "vpcId": c.vpc_id,
            "endpointPublicAccess": true,
            "endpointPrivateAccess": true,
            "publicAccessCidrs": ["0.0.0.0/0"],
        },
        "kubernetesNetworkConfig": {
            "serviceIpv4Cidr": c.service_ipv4_cidr,
            "ipFamily": c.ip_family,
            "elasticLoadBalancing": {"enabled": c.auto_mode},
        },
        "logging": {"clusterLogging": [{"types": ["api", "audit", "authenticator", "controllerManager", "scheduler"], "enabled": false}]},
        "identity": {"oidc": {"issuer": c.oidc_issuer}},
        "status": "ACTIVE",
        "certificateAuthority": {"data": c.certificate_authority},
        "platformVersion": c.platform_version,
        "tags": tags_json(&c.tags),
        "health": {"issues": []},
        "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP"},
        "upgradePolicy": {"supportType": "STANDARD"},
        "computeConfig": {"enabled": c.auto_mode},
        "storageConfig": {"blockStorage": {"enabled": c.auto_mode}},
    })
}

pub fn nodegroup_json(cluster: &str, n: &Nodegroup) -> Value {
    let mut v = json!({
        "nodegroupName": n.name,
        "nodegroupArn": n.arn,
        "clusterName": cluster,
        "version": n.version,
        "releaseVersion": n.release_version,
        "createdAt": n.created_at,
        "modifiedAt": n.modified_at,
        "status": n.status,
        "capacityType": n.capacity_type,
        "scalingConfig": {"minSize": n.min_size, "maxSize": n.max_size, "desiredSize": n.desired_size},
        "instanceTypes": n.instance_types,
        "subnets": n.subnets,
        "amiType": n.ami_type,
        "nodeRole": n.node_role,
        "labels": tags_json(&n.labels),
        "resources": {"autoScalingGroups": [{"name": n.asg_name}]},
        "health": {"issues": []},
        "updateConfig": {"maxUnavailable": n.max_unavailable},
        "tags": tags_json(&n.tags),
    });
    if !n.taints.is_empty() {
        v["taints"] = json!(n.taints);
    }
    if let Some(lt) = &n.launch_template {
        v["launchTemplate"] = json!({"name": lt.name, "version": lt.version, "id": lt.id});
    } else {
        v["diskSize"] = json!(20);
    }
    v
}

pub fn addon_json(cluster: &str, a: &Addon) -> Value {
    let mut v = json!({
        "addonName": a.name,
        "clusterName": cluster,
        "status": a.status,
        "addonVersion": a.version,
        "health": {"issues": []},
        "addonArn": a.arn,
        "createdAt": a.created_at,
        "modifiedAt": a.modified_at,
        "tags": {},
        "podIdentityAssociations": [],
    });
    if let Some(c) = &a.configuration_values {
        v["configurationValues"] = json!(c);
    }
    if let Some(r) = &a.service_account_role_arn {
        v["serviceAccountRoleArn"] = json!(r);
    }
    v
}

pub fn update_json(u: &Update) -> Value {
    json!({
        "id": u.id,
        "status": u.status,
        "type": u.kind,
        "params": u.params.iter().map(|(t, v)| json!({"type": t, "value": v})).collect::<Vec<_>>(),
        "createdAt": u.created_at,
        "errors": u.errors,
    })
}
