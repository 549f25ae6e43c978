//! The sandbox's STS: `GetCallerIdentity`, answering for the principals
//! the sandbox knows ([`crate::auth::Principal`]), so that the identity a
//! client learns from STS is the one the Kubernetes API authenticates from
//! its EKS token. Its host is also on the EKS-token host allow-list, so a
//! presigner pointed at it (`AWS_ENDPOINT_URL_STS`) makes tokens the API
//! server accepts.
//!
//! Shapes follow the STS Query API: `POST /` with `Action=GetCallerIdentity&
//! Version=2011-06-15` (or the same as a presigned `GET`), an XML
//! `GetCallerIdentityResponse`, and `InvalidClientTokenId` (403) for an
//! unknown access key. The SigV4 signature of an `Authorization` header is
//! not re-checked here (moto does not either); EKS tokens are checked in
//! full by [`crate::auth::token`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::auth::Auth;
use crate::calls::{CallLog, Service};
use crate::iam::access_key_id;

#[derive(Clone)]
struct StsHttp {
    auth: Arc<Auth>,
    calls: Arc<CallLog>,
    account: String,
}

/// The STS router.
pub fn router(auth: Arc<Auth>, calls: Arc<CallLog>, account: &str) -> Router {
    Router::new().fallback(handle).with_state(StsHttp {
        auth,
        calls,
        account: account.to_string(),
    })
}

fn xml(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

fn error(status: u16, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            uuid::Uuid::new_v4()
        ),
    )
}

async fn handle(State(st): State<StsHttp>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut params: Vec<(String, String)> = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let log_path = format!("{} {}", parts.method, parts.uri);
    if action == "DecodeAuthorizationMessage" {
        return decode_authorization_message(&st, &params, &log_path);
    }
    if action == "SimulatePrincipalPolicy" {
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        let caller = access_key_id(authorization, &params).and_then(|k| st.auth.principal_by_key(&k));
        let (status, resp) = simulate_principal_policy(&st, caller.as_ref(), &params);
        st.calls.record(Service::Iam, &action, false, status, false, &log_path);
        return resp;
    }
    if action != "GetCallerIdentity" {
        st.calls.record(Service::Sts, &action, false, 400, false, &log_path);
        return error(
            400,
            "InvalidAction",
            &format!("The action {action} is not valid for this web service."),
        );
    }
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let principal = access_key_id(authorization, &params).and_then(|k| st.auth.principal_by_key(&k));
    let Some(p) = principal else {
        st.calls.record(Service::Sts, &action, false, 403, false, &log_path);
        return error(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    };
    st.calls.record(Service::Sts, &action, false, 200, false, &log_path);
    let user_id = format!(
        "AIDA{}",
        p.access_key_id
            .trim_start_matches("AKIA")
            .to_ascii_uppercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    );
    xml(
        200,
        format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>{}</Arn><UserId>{user_id}</UserId><Account>{}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
            p.arn,
            st.account,
            uuid::Uuid::new_v4()
        ),
    )
}

fn iam_error(status: u16, code: &str, message: &str) -> (u16, Response) {
    (
        status,
        xml(
            status,
            format!(
                "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                message.replace('&', "&amp;").replace('<', "&lt;"),
                uuid::Uuid::new_v4()
            ),
        ),
    )
}

/// IAM's `SimulatePrincipalPolicy`, served on this port too
/// (`AWS_ENDPOINT_URL_IAM` points here): the caller needs
/// `iam:SimulatePrincipalPolicy` on the principal it asks about (403
/// `AccessDenied` otherwise), which must be one the sandbox knows (404
/// `NoSuchEntity`). See [`crate::iam::simulate`].
fn simulate_principal_policy(
    st: &StsHttp,
    caller: Option<&crate::auth::Principal>,
    params: &[(String, String)],
) -> (u16, Response) {
    use crate::iam::simulate::{Simulation, decide, response};
    let Some(caller) = caller else {
        return iam_error(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    };
    let sim = match Simulation::parse(params) {
        Ok(s) => s,
        Err(e) => return iam_error(400, "ValidationError", &e.0),
    };
    let iam = st.auth.iam();
    let ask = crate::iam::Request::new(
        "iam:SimulatePrincipalPolicy",
        vec![crate::iam::Resource::new(sim.principal.clone())],
    );
    let decision = iam.decide(&caller.arn, &ask);
    if let Some(why) = crate::iam::denial_message(&caller.arn, &ask.action, &decision) {
        return iam_error(403, "AccessDenied", &why);
    }
    if !st.auth.principals().iter().any(|p| p.arn == sim.principal) {
        let name = sim.principal.rsplit('/').next().unwrap_or_default().to_string();
        return iam_error(
            404,
            "NoSuchEntity",
            &format!("The user with name {name} cannot be found."),
        );
    }
    let results = decide(&iam.policy_of(&sim.principal), &sim);
    (200, xml(200, response(&results)))
}

/// `DecodeAuthorizationMessage`: the document behind an EC2 encoded
/// authorization failure message the sandbox wrote (STS API Reference;
/// `InvalidAuthorizationMessageException` for anything else).
fn decode_authorization_message(st: &StsHttp, params: &[(String, String)], log_path: &str) -> Response {
    let action = "DecodeAuthorizationMessage";
    let encoded = params
        .iter()
        .find(|(k, _)| k == "EncodedMessage")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let Some(decoded) = crate::iam::decode_message(encoded) else {
        st.calls.record(Service::Sts, action, false, 400, false, log_path);
        return error(
            400,
            "InvalidAuthorizationMessageException",
            "The message is not a valid encoded authorization message.",
        );
    };
    st.calls.record(Service::Sts, action, false, 200, false, log_path);
    let esc = decoded.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    xml(
        200,
        format!(
            "<DecodeAuthorizationMessageResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><DecodeAuthorizationMessageResult><DecodedMessage>{esc}</DecodedMessage></DecodeAuthorizationMessageResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></DecodeAuthorizationMessageResponse>",
            uuid::Uuid::new_v4()
        ),
    )
}
