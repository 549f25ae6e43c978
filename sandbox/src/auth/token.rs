//! EKS bearer tokens, verified the way the EKS authenticator
//! (aws-iam-authenticator, `pkg/token/token.go`) verifies them: the token is
//! `k8s-aws-v1.` followed by the unpadded base64url of a presigned STS
//! `GetCallerIdentity` URL whose SigV4 signature covers the
//! `x-k8s-aws-id: <cluster>` header. The real authenticator forwards the URL
//! to STS with that header set to its own cluster name, so a token minted for
//! another cluster fails STS's signature check. The sandbox is its own STS:
//! it knows each principal's secret and checks the signature itself.
//!
//! References: aws-iam-authenticator's token format and checks (host
//! allow-list, `Action=GetCallerIdentity`, `Version=2011-06-15`,
//! `X-Amz-Expires` present, a 15-minute validity from `X-Amz-Date`,
//! `x-k8s-aws-id` among `X-Amz-SignedHeaders`); AWS's "Create a signed AWS
//! API request" (SigV4 canonical request, string to sign, signing key).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The prefix of every EKS token.
pub const PREFIX: &str = "k8s-aws-v1.";

/// Why a token was refused (the reason goes to the sandbox's log and call
/// log, never into the 401 body, as the real API server says only
/// "Unauthorized").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not an EKS token (no {PREFIX} prefix)")]
    Prefix,
    #[error("the token is not base64url of a URL")]
    Encoding,
    #[error("the presigned URL's host {0} is not an STS endpoint")]
    Host(String),
    #[error("the presigned URL is not GetCallerIdentity (Action={0})")]
    Action(String),
    #[error("missing or malformed query parameter {0}")]
    Param(&'static str),
    #[error("x-k8s-aws-id is not among the signed headers")]
    ClusterNotSigned,
    #[error("X-Amz-Date {0} is expired ({1} s validity)")]
    Expired(String, u64),
    #[error("X-Amz-Date {0} is in the future")]
    Future(String),
    #[error("unknown access key id {0}")]
    UnknownKey(String),
    #[error("signature mismatch (signed for another cluster, or with another secret)")]
    Signature,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
}

/// The parsed presigned URL.
struct Presigned {
    host: String,
    path: String,
    /// Decoded query parameters (one value each, as SigV4 requires).
    query: BTreeMap<String, String>,
}

fn parse(token: &str) -> Result<Presigned, TokenError> {
    let b64 = token.strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('=').as_bytes())
        .map_err(|_| TokenError::Encoding)?;
    let url = String::from_utf8(raw).map_err(|_| TokenError::Encoding)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(TokenError::Encoding)?;
    let (authority, path_query) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let query = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(Presigned {
        host: authority.to_ascii_lowercase(),
        path: if path.is_empty() { "/".into() } else { path.to_string() },
        query,
    })
}

/// Lowercase-key lookup, as the authenticator reads the query.
fn param<'a>(p: &'a Presigned, key: &'static str) -> Result<&'a str, TokenError> {
    p.query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .ok_or(TokenError::Param(key))
}

/// AWS's URI encoding: unreserved characters stay, everything else is
/// `%XX` in upper case.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies `token` for `cluster` at wall-clock time `now`.
/// `secret_of(akid)` returns the principal's secret access key.
pub fn verify(
    token: &str,
    cluster: &str,
    sts_hosts: &[String],
    lifetime: Duration,
    now: jiff::Timestamp,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Verified, TokenError> {
    let p = parse(token)?;
    if !sts_hosts.iter().any(|h| h.eq_ignore_ascii_case(&p.host)) {
        return Err(TokenError::Host(p.host));
    }
    let action = param(&p, "Action")?;
    if action != "GetCallerIdentity" || p.path != "/" {
        return Err(TokenError::Action(action.to_string()));
    }
    if param(&p, "Version")? != "2011-06-15" {
        return Err(TokenError::Param("Version"));
    }
    if param(&p, "X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err(TokenError::Param("X-Amz-Algorithm"));
    }
    let expires: u64 = param(&p, "X-Amz-Expires")?
        .parse()
        .map_err(|_| TokenError::Param("X-Amz-Expires"))?;
    if expires == 0 || expires > 900 {
        return Err(TokenError::Param("X-Amz-Expires"));
    }
    let signed_headers = param(&p, "X-Amz-SignedHeaders")?.to_string();
    let headers: Vec<&str> = signed_headers.split(';').collect();
    if !headers.contains(&"x-k8s-aws-id") {
        return Err(TokenError::ClusterNotSigned);
    }
    let date = param(&p, "X-Amz-Date")?.to_string();
    let signed_at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &date)
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or(TokenError::Param("X-Amz-Date"))?;
    let age = now.duration_since(signed_at);
    if age.is_negative() && age.unsigned_abs() > Duration::from_secs(300) {
        return Err(TokenError::Future(date));
    }
    if !age.is_negative() && age.unsigned_abs() > lifetime {
        return Err(TokenError::Expired(date, lifetime.as_secs()));
    }
    let credential = param(&p, "X-Amz-Credential")?.to_string();
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, day, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(TokenError::Param("X-Amz-Credential"));
    };
    let secret = secret_of(akid).ok_or_else(|| TokenError::UnknownKey(akid.to_string()))?;
    let signature = param(&p, "X-Amz-Signature")?.to_ascii_lowercase();

    let canonical_query = p
        .query
        .iter()
        .filter(|(k, _)| k.as_str() != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for h in &headers {
        let value = match *h {
            "host" => p.host.as_str(),
            "x-k8s-aws-id" => cluster,
            _ => return Err(TokenError::Signature),
        };
        canonical_headers.push_str(&format!("{h}:{value}\n"));
    }
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), day);
    key = hmac(&key, region);
    key = hmac(&key, service);
    key = hmac(&key, "aws4_request");
    // Presigners hash the empty body (botocore, aws-sigv4) or, for some,
    // declare UNSIGNED-PAYLOAD; STS accepts either.
    let empty = hex(&Sha256::digest(b""));
    for payload in [empty.as_str(), "UNSIGNED-PAYLOAD"] {
        let canonical = format!(
            "GET\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}",
            p.path
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        if hex(&hmac(&key, &to_sign)) == signature {
            return Ok(Verified {
                access_key_id: akid.to_string(),
            });
        }
    }
    Err(TokenError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_token() {
        let hosts = vec!["sts.amazonaws.com".to_string()];
        let now = jiff::Timestamp::now();
        let v = |t: &str| verify(t, "c", &hosts, Duration::from_secs(900), now, |_| Some("s".into()));
        assert_eq!(v("podnet-sandbox"), Err(TokenError::Prefix));
        assert_eq!(v("k8s-aws-v1.!!!"), Err(TokenError::Encoding));
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode("https://evil.example.com/?Action=GetCallerIdentity");
        assert_eq!(
            v(&format!("k8s-aws-v1.{url}")),
            Err(TokenError::Host("evil.example.com".into()))
        );
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode("https://sts.amazonaws.com/?Action=AssumeRole&Version=2011-06-15");
        assert_eq!(
            v(&format!("k8s-aws-v1.{url}")),
            Err(TokenError::Action("AssumeRole".into()))
        );
    }

    #[test]
    fn aws_uri_encoding() {
        assert_eq!(uri_encode("a b/c+d=e~"), "a%20b%2Fc%2Bd%3De~");
    }
}
