//! The Kubernetes permissions a migration needs, asked of the API server
//! before anything changes: one `SelfSubjectAccessReview` per verb and
//! resource podnet calls (what `kubectl auth can-i` does), reported with the
//! identity the cluster sees (from the `SelfSubjectReview` that
//! `k8s::connect::probe` made on connecting). The table is the one list of
//! what `apply` does to Kubernetes; keep it next to the calls when they
//! change.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use super::{KubeError, with_retry};

/// One permission podnet needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    /// Only when the cluster runs Karpenter.
    pub karpenter: bool,
    /// What podnet does with it.
    pub why: &'static str,
}

const fn need(verb: &'static str, group: &'static str, resource: &'static str, why: &'static str) -> Need {
    Need {
        verb,
        group,
        resource,
        subresource: "",
        karpenter: false,
        why,
    }
}

const fn karpenter(verb: &'static str, group: &'static str, resource: &'static str, why: &'static str) -> Need {
    Need {
        karpenter: true,
        ..need(verb, group, resource, why)
    }
}

/// Everything `podnet apply` (and the discovery before it) does.
pub const NEEDS: &[Need] = &[
    need("list", "", "nodes", "discover the nodes"),
    need("list", "", "pods", "discover the pods and drain nodes"),
    need("list", "apps", "daemonsets", "read aws-node"),
    need("list", "apps", "deployments", "find the Karpenter controller"),
    need("list", "policy", "poddisruptionbudgets", "respect PodDisruptionBudgets"),
    need("list", "crd.k8s.amazonaws.com", "eniconfigs", "read the ENIConfigs"),
    need(
        "list",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "find the webhooks the migration moves",
    ),
    need(
        "list",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "find the webhooks the migration moves",
    ),
    need(
        "list",
        "apiregistration.k8s.io",
        "apiservices",
        "find the aggregated APIs the migration moves",
    ),
    need(
        "get",
        "",
        "services",
        "find the pods behind webhooks and aggregated APIs",
    ),
    Need {
        subresource: "proxy",
        ..need(
            "get",
            "",
            "services",
            "check the API server reaches webhooks and aggregated APIs",
        )
    },
    need(
        "create",
        "crd.k8s.amazonaws.com",
        "eniconfigs",
        "create the ENIConfigs (server-side apply)",
    ),
    need(
        "patch",
        "crd.k8s.amazonaws.com",
        "eniconfigs",
        "apply the ENIConfigs (server-side apply)",
    ),
    need("patch", "apps", "daemonsets", "follow the aws-node rollout"),
    need("patch", "", "nodes", "cordon and uncordon nodes"),
    Need {
        subresource: "eviction",
        ..need("create", "", "pods", "drain nodes through the eviction API")
    },
    need("delete", "", "pods", "delete finished pods left on a drained node"),
    need("delete", "", "nodes", "remove replaced nodes"),
    karpenter(
        "patch",
        "apps",
        "deployments",
        "set RESERVED_ENIS on the Karpenter controller",
    ),
    karpenter("list", "karpenter.sh", "nodepools", "read the NodePools"),
    karpenter(
        "patch",
        "karpenter.sh",
        "nodepools",
        "raise a NodePool's cpu limit while nodes are replaced",
    ),
    karpenter(
        "create",
        "karpenter.sh",
        "nodepools",
        "launch the control-plane reach probe on a temporary NodePool",
    ),
    karpenter(
        "delete",
        "karpenter.sh",
        "nodepools",
        "remove the probe's temporary NodePool",
    ),
    karpenter(
        "get",
        "karpenter.sh",
        "nodepools",
        "copy a NodePool's template for the probe",
    ),
    karpenter("create", "", "pods", "start the control-plane reach probe"),
    karpenter(
        "patch",
        "",
        "pods",
        "start the control-plane reach probe (server-side apply)",
    ),
    Need {
        subresource: "proxy",
        ..karpenter("get", "", "pods", "ask the API server's proxy for the probe")
    },
    karpenter("list", "karpenter.sh", "nodeclaims", "read the NodeClaims"),
    karpenter("delete", "karpenter.sh", "nodeclaims", "replace Karpenter nodes"),
    karpenter(
        "patch",
        "karpenter.k8s.aws",
        "ec2nodeclasses",
        "set kubelet.maxPods on EC2NodeClasses",
    ),
];

/// What `podnet rollback` does beyond [`NEEDS`].
pub const ROLLBACK_NEEDS: &[Need] = &[
    need(
        "delete",
        "crd.k8s.amazonaws.com",
        "eniconfigs",
        "delete the ENIConfigs podnet created",
    ),
    need(
        "get",
        "crd.k8s.amazonaws.com",
        "eniconfigs",
        "read each ENIConfig before deleting it",
    ),
];

impl Need {
    /// `create pods/eviction`, `patch nodepools.karpenter.sh`.
    pub fn describe(&self) -> String {
        let mut r = self.resource.to_string();
        if !self.group.is_empty() {
            r = format!("{r}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            r = format!("{}/{}", self.resource, self.subresource);
            if !self.group.is_empty() {
                r = format!("{r} ({})", self.group);
            }
        }
        format!("{} {r}", self.verb)
    }
}

/// What the API server answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionReport {
    /// The username the cluster sees (None when it would not say).
    pub username: Option<String>,
    pub denied: Vec<Need>,
}

/// Asks the API server about every [`NEEDS`] entry (Karpenter's only when
/// `with_karpenter`).
pub async fn check(
    client: &Client,
    username: Option<String>,
    with_karpenter: bool,
) -> Result<PermissionReport, KubeError> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut report = PermissionReport {
        username,
        denied: Vec::new(),
    };
    let pp = PostParams::default();
    for n in NEEDS.iter().filter(|n| with_karpenter || !n.karpenter) {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(n.verb.to_string()),
                    group: Some(n.group.to_string()),
                    resource: Some(n.resource.to_string()),
                    subresource: (!n.subresource.is_empty()).then(|| n.subresource.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = with_retry(&format!("ask whether podnet may {}", n.describe()), || {
            reviews.create(&pp, &review)
        })
        .await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            report.denied.push(*n);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_describe_like_kubectl_auth_can_i() {
        let evict = NEEDS.iter().find(|n| n.subresource == "eviction").unwrap();
        assert_eq!(evict.describe(), "create pods/eviction");
        let np = NEEDS
            .iter()
            .find(|n| n.resource == "nodepools" && n.verb == "patch")
            .unwrap();
        assert_eq!(np.describe(), "patch nodepools.karpenter.sh");
    }
}
