//! The EC2 audit proxy that `AWS_ENDPOINT_URL_EC2` points at: it forwards
//! every request (method, path, query, headers, body) to moto unchanged and
//! returns moto's answer untouched, recording each call's `Action`, status
//! and whether it mutates, and answering injected faults itself with EC2's
//! XML error document.
//!
//! One request is changed on its way: `CreateLaunchTemplateVersion` with a
//! `SourceVersion` gets the source version's launch template data, which EC2
//! copies and moto does not (`source_version`). Two deletes moto performs
//! are refused as EC2 refuses them while something depends on the resource
//! (`dependencies`). With a lag set, answers are as eventually consistent as
//! EC2's (`consistency`). When a principal has an IAM policy attached,
//! each of its calls is authorized first (`authorize`) and refused with
//! EC2's `UnauthorizedOperation` — dry runs included, as EC2 checks
//! permissions before it answers `DryRunOperation`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::calls::{CallLog, Service, ec2_mutating};

mod authorize;
pub mod consistency;
mod dependencies;
pub mod s3;
mod source_version;

pub use consistency::Consistency;

use crate::auth::Auth;
use crate::control_plane::ControlPlane;

#[derive(Clone)]
pub struct ProxyState {
    /// `127.0.0.1:port` of moto.
    pub upstream: String,
    pub calls: Arc<CallLog>,
    pub consistency: Arc<Consistency>,
    /// Told of every CIDR block associated through the proxy.
    pub control_plane: Arc<ControlPlane>,
    /// Who signed a request, and the IAM policy it is held to.
    pub auth: Arc<Auth>,
    pub arns: authorize::Arns,
}

impl ProxyState {
    pub fn new(
        upstream: String,
        calls: Arc<CallLog>,
        consistency: Arc<Consistency>,
        control_plane: Arc<ControlPlane>,
        auth: Arc<Auth>,
        (region, account): (&str, &str),
    ) -> ProxyState {
        ProxyState {
            upstream,
            calls,
            consistency,
            control_plane,
            auth,
            arns: authorize::Arns {
                region: region.to_string(),
                account: account.to_string(),
            },
        }
    }
}

pub fn router(state: ProxyState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// The query `Action` of an EC2 request (form body, else the query string).
pub fn action_of(query: Option<&str>, content_type: &str, body: &[u8]) -> String {
    let from = |bytes: &[u8]| {
        form_urlencoded::parse(bytes)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    };
    let in_body = if content_type.starts_with("application/x-www-form-urlencoded") || content_type.is_empty() {
        from(body)
    } else {
        None
    };
    in_body
        .or_else(|| query.and_then(|q| from(q.as_bytes())))
        .unwrap_or_else(|| "Unknown".to_string())
}

/// Whether an EC2 query request carries `DryRun=true`.
pub fn is_dry_run(query: Option<&str>, body: &[u8]) -> bool {
    let set =
        |bytes: &[u8]| form_urlencoded::parse(bytes).any(|(k, v)| k == "DryRun" && v.eq_ignore_ascii_case("true"));
    set(body) || query.is_some_and(|q| set(q.as_bytes()))
}

/// EC2's XML error document.
pub fn ec2_error_body(code: &str, message: &str) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        esc(code),
        esc(message),
        uuid::Uuid::new_v4()
    )
}

pub(crate) fn xml_response(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml;charset=UTF-8"));
    r
}

/// Send one request to moto; its answer's head and body. `content-length`
/// is left to hyper, since the body may differ from the client's.
async fn send(
    upstream: &str,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(axum::http::response::Parts, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("connecting to moto at {upstream}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method.clone()).uri(path_and_query);
    for (k, v) in headers {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (rparts, rbody) = resp.into_parts();
    let bytes = rbody.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((rparts, bytes))
}

/// Forwards to moto; a successful answer passes through `edit` (the
/// eventual-consistency view) on its way back.
pub(crate) async fn forward(
    upstream: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
    edit: impl FnOnce(&str) -> Option<String>,
) -> Result<Response, String> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (rparts, mut bytes) = send(upstream, &parts.method, &pq, &parts.headers, body).await?;
    if rparts.status.is_success()
        && let Ok(text) = std::str::from_utf8(&bytes)
        && let Some(edited) = edit(text)
    {
        bytes = Bytes::from(edited);
    }
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = rparts.status;
    for (k, v) in &rparts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::CONTENT_LENGTH {
            out.headers_mut().append(HeaderName::from(k), v.clone());
        }
    }
    Ok(out)
}

/// A `CreateLaunchTemplateVersion` form body with the source version's
/// launch template data added where the request sets none (see
/// [`source_version`]); the body unchanged when there is no source version
/// or moto cannot describe it (moto then answers the request as it would).
async fn inherit_source(upstream: &str, headers: &HeaderMap, body: Bytes) -> Bytes {
    let request = source_version::form_pairs(&body);
    let Some(describe) = source_version::describe_source(&request) else {
        return body;
    };
    let describe = Bytes::from(source_version::encode(&describe));
    let answer = match send(upstream, &Method::POST, "/", headers, describe).await {
        Ok((head, bytes)) if head.status.is_success() => bytes,
        Ok((head, _)) => {
            tracing::debug!("describing the source launch template version: HTTP {}", head.status);
            return body;
        }
        Err(e) => {
            tracing::debug!("describing the source launch template version: {e}");
            return body;
        }
    };
    let source = std::str::from_utf8(&answer)
        .map_err(|e| e.to_string())
        .and_then(source_version::source_parameters);
    match source {
        Ok(source) => Bytes::from(source_version::encode(&source_version::merge(&request, &source))),
        Err(e) => {
            tracing::warn!("reading moto's launch template version: {e}");
            body
        }
    }
}

/// EC2's refusal of a guarded delete, from what moto holds; `None` lets it
/// through (also when moto cannot be read).
async fn refuse_dependent(upstream: &str, headers: &HeaderMap, g: &dependencies::Guarded) -> Option<(String, String)> {
    let read = |pairs: Vec<(String, String)>| async move {
        let body = Bytes::from(source_version::encode(&pairs));
        match send(upstream, &Method::POST, "/", headers, body).await {
            Ok((head, bytes)) if head.status.is_success() => String::from_utf8(bytes.to_vec()).ok(),
            _ => None,
        }
    };
    match g {
        dependencies::Guarded::DeleteSubnet { subnet_id } => {
            dependencies::subnet_refusal(subnet_id, &read(dependencies::first_read(g)).await?)
        }
        dependencies::Guarded::DisassociateVpcCidrBlock { association_id } => {
            let (vpc, block) = dependencies::association(association_id, &read(dependencies::first_read(g)).await?)?;
            dependencies::block_refusal(&vpc, block, &read(dependencies::subnets_read(&vpc)).await?)
        }
    }
}

/// EC2's refusal of a call its signer's IAM policy does not allow: 403
/// `UnauthorizedOperation` with AWS's wording and an encoded authorization
/// failure message; 401 `AuthFailure` for credentials the sandbox does not
/// know. `None` lets the call through.
async fn authorize_call(
    st: &ProxyState,
    headers: &HeaderMap,
    action: &str,
    params: &[(String, String)],
) -> Option<Response> {
    let iam = st.auth.iam();
    if !iam.enforcing() {
        return None;
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let Some(principal) = crate::iam::access_key_id(authorization, params).and_then(|k| st.auth.principal_by_key(&k))
    else {
        return Some(xml_response(
            401,
            ec2_error_body(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
        ));
    };
    let mut found = vec![];
    for lookup in authorize::lookups(action, params) {
        let body = Bytes::from(source_version::encode(&authorize::describe(&lookup)));
        if let Ok((head, bytes)) = send(&st.upstream, &Method::POST, "/", headers, body).await
            && head.status.is_success()
            && let Some(f) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|a| authorize::found(&lookup, a))
        {
            found.push(f);
        }
    }
    for request in authorize::requests(action, params, &found, &st.arns) {
        let decision = iam.decide(&principal.arn, &request);
        if let Some(why) = crate::iam::denial_message(&principal.arn, &request.action, &decision) {
            let encoded = crate::iam::encoded_message(&principal.arn, &request, &decision);
            return Some(xml_response(
                403,
                ec2_error_body(
                    "UnauthorizedOperation",
                    &format!(
                        "You are not authorized to perform this operation. {why}. Encoded authorization failure message: {encoded}"
                    ),
                ),
            ));
        }
    }
    None
}

async fn handle(State(st): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let action = action_of(parts.uri.query(), ct, &body);
    let is_form = ct.is_empty() || ct.starts_with("application/x-www-form-urlencoded");
    let dry_run = is_form && is_dry_run(parts.uri.query(), &body);
    // A dry run changes nothing, whatever its action.
    let mutating = ec2_mutating(&action) && !dry_run;
    let path = format!("{} {}", parts.method, parts.uri.path());
    if let Some(f) = st.calls.take_fault(Service::Ec2, &action) {
        st.calls.record(Service::Ec2, &action, mutating, f.status, true, &path);
        return xml_response(f.status, ec2_error_body(&f.code, &f.message_or_default()));
    }
    let params = || {
        let mut p = source_version::form_pairs(parts.uri.query().unwrap_or_default().as_bytes());
        p.extend(source_version::form_pairs(&body));
        p
    };
    if is_form && let Some(denied) = authorize_call(&st, &parts.headers, &action, &params()).await {
        st.calls
            .record(Service::Ec2, &action, mutating, denied.status().as_u16(), false, &path);
        return denied;
    }
    if dry_run {
        // "Checks whether you have the required permissions for the action,
        // without actually making the request … If you have the required
        // permissions, the error response is DryRunOperation" (EC2 API
        // Reference, Common parameters: DryRun), HTTP 412. moto performs
        // some actions (CreateSubnet, AssociateRouteTable, DeleteSubnet)
        // despite the flag, so the request never reaches it.
        st.calls.record(Service::Ec2, &action, false, 412, false, &path);
        return xml_response(
            412,
            ec2_error_body(
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
            ),
        );
    }
    if is_form
        && st.consistency.lag().is_some()
        && let Some((code, message)) = st.consistency.refuse(&action, &source_version::form_pairs(&body))
    {
        st.calls.record(Service::Ec2, &action, mutating, 400, false, &path);
        return xml_response(400, ec2_error_body(&code, &message));
    }
    if is_form
        && let Some(g) = dependencies::guarded(&action, &params())
        && let Some((code, message)) = refuse_dependent(&st.upstream, &parts.headers, &g).await
    {
        st.calls.record(Service::Ec2, &action, mutating, 400, false, &path);
        return xml_response(400, ec2_error_body(&code, &message));
    }
    let body = if action == "CreateLaunchTemplateVersion" && is_form {
        inherit_source(&st.upstream, &parts.headers, body).await
    } else {
        body
    };
    let consistency = st.consistency.clone();
    let control_plane = st.control_plane.clone();
    let edit = |answer: &str| {
        control_plane.observe(&action, answer);
        consistency.created(&action, answer);
        consistency.describe(&action, answer)
    };
    let resp = match forward(&st.upstream, &parts, body, edit).await {
        Ok(r) => r,
        Err(e) => xml_response(503, ec2_error_body("Unavailable", &e)),
    };
    st.calls
        .record(Service::Ec2, &action, mutating, resp.status().as_u16(), false, &path);
    resp
}

#[cfg(test)]
mod dry_run_tests {
    use super::is_dry_run;

    #[test]
    fn dry_run_is_read_from_the_form_or_the_query() {
        assert!(is_dry_run(None, b"Action=CreateSubnet&DryRun=true&VpcId=vpc-1"));
        assert!(is_dry_run(Some("Action=CreateSubnet&DryRun=true"), b""));
        assert!(!is_dry_run(None, b"Action=CreateSubnet&DryRun=false"));
        assert!(!is_dry_run(None, b"Action=CreateSubnet&VpcId=vpc-1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_from_body_or_query() {
        assert_eq!(
            action_of(
                None,
                "application/x-www-form-urlencoded; charset=utf-8",
                b"Action=DescribeVpcs&Version=2016-11-15"
            ),
            "DescribeVpcs"
        );
        assert_eq!(
            action_of(Some("Action=CreateSubnet&Version=1"), "text/plain", b""),
            "CreateSubnet"
        );
        assert_eq!(action_of(None, "", b""), "Unknown");
    }

    #[test]
    fn error_document_escapes() {
        let b = ec2_error_body("RequestLimitExceeded", "a < b");
        assert!(b.contains("<Code>RequestLimitExceeded</Code>"));
        assert!(b.contains("a &lt; b"));
    }
}
