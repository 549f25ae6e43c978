//! Who may call the simulated Kubernetes API, decided the way EKS decides:
//! TLS with a per-cluster CA ([`tls`]); authentication of a bearer token —
//! an EKS token minted from a principal's AWS credentials ([`token`]) or the
//! sandbox kubeconfig's static token (kube-apiserver's `--token-auth-file`
//! semantics: a fixed token mapped to a user in `system:masters`); and
//! authorization from the principal's EKS access entry, whose access policy
//! (`AmazonEKSClusterAdminPolicy` or `AmazonEKSViewPolicy`) decides 403s.
//!
//! Error shapes follow the API server: a missing or bad credential on a
//! non-public path is `401 Unauthorized` with the bare `Status` body
//! (`message: "Unauthorized"`); an authenticated user without permission is
//! `403 Forbidden` with `<resource> is forbidden: User "<name>" cannot <verb>
//! resource "<resource>" in API group "<group>" …` (apiserver
//! `responsewriters.ForbiddenStatusError`). Anonymous requests may read only
//! the public-info paths (`/version`, `/healthz`, `/livez`, `/readyz`), as
//! the `system:public-info-viewer` ClusterRole allows on EKS.

pub mod tls;
pub mod token;

use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kube::ApiError;

/// aws-iam-authenticator's token validity (`presignedURLExpiration`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The username and group the sandbox kubeconfig's static token maps to.
pub const STATIC_ADMIN_USER: &str = "podnet-sandbox-admin";

/// An EKS access policy, as associated to an access entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessPolicy {
    /// `AmazonEKSClusterAdminPolicy`: every verb on every resource.
    ClusterAdmin,
    /// `AmazonEKSViewPolicy`: get, list and watch.
    View,
}

impl AccessPolicy {
    pub fn arn(self) -> &'static str {
        match self {
            AccessPolicy::ClusterAdmin => "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            AccessPolicy::View => "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
        }
    }

    fn allows(self, verb: &str) -> bool {
        match self {
            AccessPolicy::ClusterAdmin => true,
            AccessPolicy::View => matches!(verb, "get" | "list" | "watch"),
        }
    }
}

/// An IAM principal the sandbox knows: its credentials (the sandbox is its
/// own STS) and its access entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `arn:aws:iam::<account>:user/<name>`; also the Kubernetes username,
    /// as an access entry's default.
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `None`: no access entry, so the cluster answers 401 (EKS maps only
    /// principals with an access entry or an aws-auth entry to a user).
    pub access_policy: Option<AccessPolicy>,
}

/// The default principals: the admin whose keys the sandbox's env file
/// exports, and a read-only one for permission tests.
pub fn default_principals(account: &str) -> Vec<Principal> {
    vec![
        Principal {
            arn: format!("arn:aws:iam::{account}:user/podnet-sandbox-admin"),
            access_key_id: ADMIN_ACCESS_KEY_ID.into(),
            secret_access_key: "testing".into(),
            access_policy: Some(AccessPolicy::ClusterAdmin),
        },
        Principal {
            arn: format!("arn:aws:iam::{account}:user/podnet-readonly"),
            access_key_id: READONLY_ACCESS_KEY_ID.into(),
            secret_access_key: READONLY_SECRET_ACCESS_KEY.into(),
            access_policy: Some(AccessPolicy::View),
        },
    ]
}

/// The admin principal's access key id, the one the env file exports (moto's
/// own `testing`).
pub const ADMIN_ACCESS_KEY_ID: &str = "testing";

/// The read-only principal's keys (sandbox-only, like moto's `testing`).
pub const READONLY_ACCESS_KEY_ID: &str = "AKIAPODNETREADONLY01";
pub const READONLY_SECRET_ACCESS_KEY: &str = "podnet-sandbox-readonly-secret";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    policy: Option<AccessPolicy>,
}

impl User {
    fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            policy: None,
        }
    }
}

/// What a request asks for, for authorization.
#[derive(Debug, Clone)]
pub enum Attributes<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        /// `pods`, or `pods/eviction` for a subresource.
        resource: String,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

/// The authenticator and authorizer of one cluster.
#[derive(Debug)]
pub struct Auth {
    cluster: String,
    static_token: String,
    principals: RwLock<Vec<Principal>>,
    sts_hosts: RwLock<Vec<String>>,
    token_lifetime: RwLock<Duration>,
    /// The identity-based policies of the principals (their AWS side).
    iam: crate::iam::Policies,
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

impl Auth {
    pub fn new(cluster: &str, region: &str, account: &str) -> Auth {
        Auth {
            cluster: cluster.to_string(),
            static_token: format!("podnet-sandbox.{}", uuid::Uuid::new_v4().simple()),
            principals: RwLock::new(default_principals(account)),
            sts_hosts: RwLock::new(vec![
                "sts.amazonaws.com".into(),
                format!("sts.{region}.amazonaws.com"),
                format!("sts.{region}.api.aws"),
            ]),
            token_lifetime: RwLock::new(DEFAULT_TOKEN_LIFETIME),
            iam: crate::iam::Policies::default(),
        }
    }

    /// The sandbox kubeconfig's token.
    pub fn static_token(&self) -> &str {
        &self.static_token
    }

    /// Accept presigned URLs for this host too (the sandbox's own STS).
    pub fn add_sts_host(&self, host: &str) {
        self.sts_hosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(host.to_ascii_lowercase());
    }

    pub fn principals(&self) -> Vec<Principal> {
        self.principals.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds or replaces (by access key id) a principal.
    pub fn put_principal(&self, p: Principal) {
        let mut all = self.principals.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|x| x.access_key_id != p.access_key_id);
        all.push(p);
    }

    /// The principals' IAM policies.
    pub fn iam(&self) -> &crate::iam::Policies {
        &self.iam
    }

    pub fn principal_by_key(&self, access_key_id: &str) -> Option<Principal> {
        self.principals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|p| p.access_key_id == access_key_id)
            .cloned()
    }

    pub fn token_lifetime(&self) -> Duration {
        *self.token_lifetime.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Shortens (or restores) how long an EKS token is accepted after its
    /// `X-Amz-Date`, on the wall clock (tokens are signed with wall-clock
    /// dates, like every timestamp the sandbox writes).
    pub fn set_token_lifetime(&self, d: Duration) {
        *self.token_lifetime.write().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// Authenticates the `Authorization` header (absent: anonymous).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<User, (ApiError, String)> {
        let Some(h) = authorization else {
            return Ok(User::anonymous());
        };
        let Some(bearer) = h.strip_prefix("Bearer ").map(str::trim) else {
            return Err((unauthorized(), "not a bearer token".into()));
        };
        if bearer == self.static_token {
            return Ok(User {
                name: STATIC_ADMIN_USER.into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                policy: Some(AccessPolicy::ClusterAdmin),
            });
        }
        let hosts = self.sts_hosts.read().unwrap_or_else(|e| e.into_inner());
        let verified = token::verify(
            bearer,
            &self.cluster,
            &hosts,
            self.token_lifetime(),
            jiff::Timestamp::now(),
            |akid| self.principal_by_key(akid).map(|p| p.secret_access_key),
        )
        .map_err(|e| (unauthorized(), e.to_string()))?;
        drop(hosts);
        let p = self
            .principal_by_key(&verified.access_key_id)
            .ok_or_else(|| (unauthorized(), "principal removed".to_string()))?;
        // EKS authenticates only principals with an access entry (or an
        // aws-auth mapping): any other IAM identity gets 401, not 403.
        if p.access_policy.is_none() {
            return Err((unauthorized(), format!("{} has no access entry", p.arn)));
        }
        Ok(User {
            name: p.arn,
            groups: vec!["system:authenticated".into()],
            policy: p.access_policy,
        })
    }

    /// Authorizes `user` for `attrs`, or the 403 the API server sends.
    pub fn authorize(&self, user: &User, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        let allowed = match attrs {
            Attributes::NonResource { verb, path } => {
                let public =
                    matches!(*path, "/version" | "/healthz" | "/livez" | "/readyz") || path.starts_with("/version/");
                let discovery = *path == "/api"
                    || *path == "/apis"
                    || path.starts_with("/api/")
                    || path.starts_with("/apis/")
                    || path.starts_with("/openapi/");
                *verb == "get" && (public || (discovery && user.groups.iter().any(|g| g == "system:authenticated")))
                    || user.policy == Some(AccessPolicy::ClusterAdmin)
            }
            Attributes::Resource {
                verb, group, resource, ..
            } => {
                // Every authenticated user may ask what it may do
                // (system:basic-user).
                let self_review = *verb == "create"
                    && *group == "authorization.k8s.io"
                    && matches!(
                        resource.as_str(),
                        "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                    );
                self_review && user.policy.is_some() || user.policy.is_some_and(|p| p.allows(verb))
            }
        };
        if allowed { Ok(()) } else { Err(forbidden(user, attrs)) }
    }

    /// Would `user` be allowed? (for SelfSubjectAccessReview)
    pub fn allowed(&self, user: &User, attrs: &Attributes<'_>) -> bool {
        self.authorize(user, attrs).is_ok()
    }
}

/// apiserver's `ForbiddenStatusError` wording.
fn forbidden(user: &User, attrs: &Attributes<'_>) -> ApiError {
    match attrs {
        Attributes::NonResource { verb, path } => ApiError::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{}\" cannot {verb} path \"{path}\"", user.name),
        ),
        Attributes::Resource {
            verb,
            group,
            resource,
            namespace,
            name,
        } => {
            let object = match name {
                Some(n) => format!("{resource} \"{n}\""),
                None => resource.clone(),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            let (kind, _) = resource.split_once('/').unwrap_or((resource.as_str(), ""));
            let mut details = json!({"kind": kind});
            if let Some(n) = name {
                details["name"] = json!(n);
            }
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            ApiError {
                details: Some(details),
                ..ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{object} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}",
                        user.name
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_token_is_admin_and_anything_else_is_401() {
        let a = Auth::new("c", "ap-northeast-2", "123456789012");
        let tok = format!("Bearer {}", a.static_token());
        let admin = a.authenticate(Some(&tok)).unwrap();
        assert_eq!(admin.name, STATIC_ADMIN_USER);
        let (e, _) = a.authenticate(Some("Bearer podnet-sandbox")).unwrap_err();
        assert_eq!(
            (e.code, e.reason.as_str(), e.message.as_str()),
            (401, "Unauthorized", "Unauthorized")
        );
        let (e, _) = a.authenticate(Some("Basic eDp5")).unwrap_err();
        assert_eq!(e.code, 401);
    }

    #[test]
    fn anonymous_reads_only_public_info_and_view_cannot_write() {
        let a = Auth::new("c", "r", "1");
        let anon = a.authenticate(None).unwrap();
        let get = |p| Attributes::NonResource { verb: "get", path: p };
        assert!(a.authorize(&anon, &get("/version")).is_ok());
        let e = a.authorize(&anon, &get("/api")).unwrap_err();
        assert_eq!(
            e.message,
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
        let viewer = User {
            name: "arn:aws:iam::1:user/v".into(),
            groups: vec!["system:authenticated".into()],
            policy: Some(AccessPolicy::View),
        };
        let patch = Attributes::Resource {
            verb: "patch",
            group: "",
            resource: "nodes".into(),
            namespace: None,
            name: Some("n1"),
        };
        let e = a.authorize(&viewer, &patch).unwrap_err();
        assert_eq!(
            e.message,
            "nodes \"n1\" is forbidden: User \"arn:aws:iam::1:user/v\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let evict = Attributes::Resource {
            verb: "create",
            group: "",
            resource: "pods/eviction".into(),
            namespace: Some("default"),
            name: Some("p"),
        };
        assert!(
            a.authorize(&viewer, &evict)
                .unwrap_err()
                .message
                .contains("in the namespace \"default\"")
        );
        let list = Attributes::Resource {
            verb: "list",
            group: "apps",
            resource: "deployments".into(),
            namespace: None,
            name: None,
        };
        assert!(a.authorize(&viewer, &list).is_ok());
    }
}
