//! The EKS REST-JSON routes, exactly as the EKS API reference (and
//! botocore's `eks/2017-11-01/service-2.json`) lays them out, plus the
//! sandbox's control endpoints on the same port: `GET/DELETE /_sandbox/calls`
//! (the call log), `GET/POST/DELETE /_sandbox/faults` (fault injection) and
//! `GET/PUT/DELETE /_sandbox/iam-policy` (the IAM policy a principal is held
//! to; `PUT` takes the policy document, for the admin principal or the one
//! `?principal=ARN` names). A call its signer's policy does not allow gets
//! EKS's 403 `AccessDeniedException`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Eks, EksError};
use crate::auth::{ADMIN_ACCESS_KEY_ID, Auth};
use crate::calls::{CallLog, Fault, Service};

#[derive(Clone)]
pub struct EksHttp {
    pub eks: Arc<Eks>,
    pub calls: Arc<CallLog>,
    pub auth: Arc<Auth>,
}

pub fn router(eks: Arc<Eks>, calls: Arc<CallLog>, auth: Arc<Auth>) -> Router {
    Router::new().fallback(handle).with_state(EksHttp { eks, calls, auth })
}

/// EKS's refusal of a call its signer may not make: 403
/// `UnrecognizedClientException` for keys the sandbox does not know, 403
/// `AccessDeniedException` naming the principal, action and resource when
/// the policy does not allow it. Only while some policy is attached.
fn authorize_call(
    st: &EksHttp,
    headers: &axum::http::HeaderMap,
    op: &str,
    segs: &[&str],
    q: &HashMap<String, String>,
) -> Option<EksError> {
    let iam = st.auth.iam();
    if !iam.enforcing() {
        return None;
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let Some(principal) = crate::iam::access_key_id(authorization, &[]).and_then(|k| st.auth.principal_by_key(&k))
    else {
        return Some(EksError::new(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    let request = super::authorize::request(&st.eks, op, segs, q)?;
    let decision = iam.decide(&principal.arn, &request);
    crate::iam::denial_message(&principal.arn, &request.action, &decision)
        .map(|m| EksError::new(403, "AccessDeniedException", m))
}

fn ok(v: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-requestid", id);
    }
    r
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The EKS operation a request maps to.
fn operation(method: &Method, segs: &[&str]) -> Option<&'static str> {
    Some(match (method.as_str(), segs) {
        ("GET", ["clusters"]) => "ListClusters",
        ("GET", ["clusters", _]) => "DescribeCluster",
        ("GET", ["clusters", _, "node-groups"]) => "ListNodegroups",
        ("GET", ["clusters", _, "node-groups", _]) => "DescribeNodegroup",
        ("POST", ["clusters", _, "node-groups", _, "update-version"]) => "UpdateNodegroupVersion",
        ("POST", ["clusters", _, "node-groups", _, "update-config"]) => "UpdateNodegroupConfig",
        ("GET", ["clusters", _, "updates"]) => "ListUpdates",
        ("GET", ["clusters", _, "updates", _]) => "DescribeUpdate",
        ("GET", ["clusters", _, "addons"]) => "ListAddons",
        ("GET", ["clusters", _, "addons", _]) => "DescribeAddon",
        ("POST", ["clusters", _, "addons", _, "update"]) => "UpdateAddon",
        ("GET", ["addons", "supported-versions"]) => "DescribeAddonVersions",
        ("GET", ["addons", "configuration-schemas"]) => "DescribeAddonConfiguration",
        _ => return None,
    })
}

pub fn eks_mutating(op: &str) -> bool {
    !(op.starts_with("Describe") || op.starts_with("List"))
}

async fn handle(State(st): State<EksHttp>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    let segs_owned: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segs_owned.iter().map(String::as_str).collect();
    let q: HashMap<String, String> = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if segs.first() == Some(&"_sandbox") {
        return control(&st, &parts.method, &segs[1..], &q, &body);
    }
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or(path.clone());
    let log_path = format!("{} {pq}", parts.method);
    let Some(op) = operation(&parts.method, &segs) else {
        let e = EksError::new(
            404,
            "UnknownOperationException",
            format!("Unknown operation {} {path}", parts.method),
        );
        st.calls.record(Service::Eks, "Unknown", false, 404, false, &log_path);
        return e.to_response();
    };
    let mutating = eks_mutating(op);
    if let Some(f) = st.calls.take_fault(Service::Eks, op) {
        st.calls.record(Service::Eks, op, mutating, f.status, true, &log_path);
        return EksError::new(f.status, &f.code, f.message_or_default()).to_response();
    }
    if let Some(denied) = authorize_call(&st, &parts.headers, op, &segs, &q) {
        st.calls
            .record(Service::Eks, op, mutating, denied.status, false, &log_path);
        return denied.to_response();
    }
    let parsed: Result<Value, EksError> = if body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            EksError::new(
                400,
                "SerializationException",
                format!("Could not parse the request body: {e}"),
            )
        })
    };
    let eks = &st.eks;
    let result = parsed.and_then(|b| match (op, segs.as_slice()) {
        ("ListClusters", _) => eks.list_clusters(&q),
        ("DescribeCluster", [_, c]) => eks.describe_cluster(c),
        ("ListNodegroups", [_, c, _]) => eks.list_nodegroups(c, &q),
        ("DescribeNodegroup", [_, c, _, ng]) => eks.describe_nodegroup(c, ng),
        ("UpdateNodegroupVersion", [_, c, _, ng, _]) => eks.update_nodegroup_version(c, ng, &b),
        ("UpdateNodegroupConfig", [_, c, _, ng, _]) => eks.update_nodegroup_config(c, ng, &b),
        ("ListUpdates", [_, c, _]) => eks.list_updates(c, &q),
        ("DescribeUpdate", [_, c, _, id]) => eks.describe_update(c, id, &q),
        ("ListAddons", [_, c, _]) => eks.list_addons(c, &q),
        ("DescribeAddon", [_, c, _, a]) => eks.describe_addon(c, a),
        ("UpdateAddon", [_, c, _, a, _]) => eks.update_addon(c, a, &b),
        ("DescribeAddonVersions", _) => eks.describe_addon_versions(&q),
        ("DescribeAddonConfiguration", _) => eks.describe_addon_configuration(&q),
        _ => Err(EksError::new(404, "UnknownOperationException", "unknown operation")),
    });
    let resp = match result {
        Ok(v) => ok(&v),
        Err(e) => e.to_response(),
    };
    st.calls
        .record(Service::Eks, op, mutating, resp.status().as_u16(), false, &log_path);
    resp
}

fn control(st: &EksHttp, method: &Method, segs: &[&str], q: &HashMap<String, String>, body: &[u8]) -> Response {
    let bad = |m: String| {
        let mut r = ok(&json!({"message": m}));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    };
    match (method.as_str(), segs) {
        ("GET", ["calls"]) => ok(&json!({"calls": st.calls.calls()})),
        ("DELETE", ["calls"]) => {
            st.calls.clear();
            ok(&json!({}))
        }
        ("GET", ["faults"]) => ok(&json!({"faults": st.calls.faults()})),
        ("DELETE", ["faults"]) => {
            st.calls.clear_faults();
            ok(&json!({}))
        }
        ("GET", ["iam-policy"]) => ok(&json!({"policies": st.auth.iam().documents()})),
        ("DELETE", ["iam-policy"]) => {
            st.auth.iam().clear();
            ok(&json!({}))
        }
        ("PUT", ["iam-policy"]) => {
            let principal = match q.get("principal") {
                Some(arn) => st.auth.principals().into_iter().find(|p| &p.arn == arn),
                None => st.auth.principal_by_key(ADMIN_ACCESS_KEY_ID),
            };
            let Some(principal) = principal else {
                return bad(format!(
                    "principal: no sandbox principal has the ARN {:?}",
                    q.get("principal").map(String::as_str).unwrap_or_default()
                ));
            };
            let attached = serde_json::from_slice::<Value>(body)
                .map_err(|e| e.to_string())
                .and_then(|doc| st.auth.iam().attach(&principal.arn, &doc).map_err(|e| e.to_string()));
            match attached {
                Ok(()) => ok(&json!({"policies": st.auth.iam().documents()})),
                Err(e) => bad(format!("invalid IAM policy: {e}")),
            }
        }
        ("POST", ["faults"]) => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => match f.invalid() {
                Some(why) => bad(format!("invalid fault: {why}")),
                None => {
                    st.calls.inject(f);
                    ok(&json!({"faults": st.calls.faults()}))
                }
            },
            Err(e) => bad(format!("invalid fault: {e}")),
        },
        _ => {
            let mut r = ok(&json!({"message": "unknown sandbox control endpoint"}));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(operation(&get, &["clusters", "x"]), Some("DescribeCluster"));
        assert_eq!(
            operation(&post, &["clusters", "x", "addons", "vpc-cni", "update"]),
            Some("UpdateAddon")
        );
        assert_eq!(
            operation(&get, &["addons", "configuration-schemas"]),
            Some("DescribeAddonConfiguration")
        );
        assert_eq!(operation(&post, &["clusters", "x"]), None);
        assert!(eks_mutating("UpdateAddon"));
        assert!(!eks_mutating("DescribeUpdate"));
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
