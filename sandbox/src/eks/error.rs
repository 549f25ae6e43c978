//! EKS errors as the REST-JSON protocol carries them: the HTTP status, the
//! `x-amzn-errortype` header (what botocore and the Rust SDK read the error
//! code from) and a JSON body with `message` plus the shape's context fields.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EksError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `clusterName`, `nodegroupName`, `addonName` as the error shapes have.
    pub context: Map<String, Value>,
}

impl EksError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        EksError {
            status,
            code: code.to_string(),
            message: message.into(),
            context: Map::new(),
        }
    }

    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.context.insert(k.to_string(), json!(v));
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFoundException", message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterException", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequestException", message)
    }

    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(409, "ResourceInUseException", message)
    }

    pub fn cluster_not_found(name: &str) -> Self {
        Self::not_found(format!("No cluster found for name: {name}.")).with("clusterName", name)
    }

    pub fn to_response(&self) -> Response {
        let mut body = self.context.clone();
        body.insert("message".into(), json!(self.message));
        let mut r = Response::new(Body::from(serde_json::to_vec(&Value::Object(body)).unwrap_or_default()));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&self.code) {
            h.insert("x-amzn-errortype", v);
        }
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            h.insert("x-amzn-requestid", v);
        }
        r
    }
}
