//! Helpers shared by the sandbox's integration tests: starting sandboxes,
//! a minimal HTTP client for asserting on exact wire bodies, and runners for
//! the independent clients (kubectl, the venv's AWS CLI and Python/boto3).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use podnet_sandbox::{Sandbox, SandboxOptions, Scenario};
use serde_json::Value;

pub fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).expect("sandbox starts")
}

pub fn sandbox_with(scenario: Scenario) -> Sandbox {
    Sandbox::start(SandboxOptions::default().with_scenario(scenario)).expect("sandbox starts")
}

/// A sandbox without moto (EC2 ids are made up): for Kubernetes-only tests.
pub fn sandbox_no_moto() -> Sandbox {
    Sandbox::start(SandboxOptions {
        moto: false,
        ..Default::default()
    })
    .expect("sandbox starts")
}

/// A sandbox without moto whose cluster stays as seeded (no controllers):
/// for tests of API semantics that count on nothing else writing, e.g.
/// exact PDB figures right after an eviction, or a status read back right
/// after a scale.
pub fn sandbox_frozen() -> Sandbox {
    Sandbox::start(SandboxOptions {
        moto: false,
        controllers: false,
        ..Default::default()
    })
    .expect("sandbox starts")
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request over TLS (the server closes after answering), with
/// the sandbox kubeconfig's admin token unless `headers` carry an
/// `Authorization` of their own.
pub fn http(sb: &Sandbox, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let token = format!("Bearer {}", sb.admin_token());
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
        all.push(("Authorization", &token));
    }
    raw_http(sb, method, path, &all, body)
}

/// An HTTP/1.0 request as text.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> String {
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// [`http`] without adding any credential.
pub fn raw_http(sb: &Sandbox, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    use std::io::{Read, Write};
    let addr = sb.kube_url().trim_start_matches("https://");
    let mut s = podnet_sandbox::auth::tls::blocking_stream(addr, sb.kube_ca_pem()).expect("connect over TLS");
    s.write_all(request(addr, method, path, headers, body).as_bytes())
        .expect("write");
    let mut buf = Vec::new();
    // The server closes after an HTTP/1.0 answer, sometimes without a TLS
    // close_notify: what was read before that is the whole answer.
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// One plain-HTTP/1.0 request to one of the sandbox's AWS-side endpoints
/// (EKS, its `/_sandbox` control API, the EC2 proxy).
pub fn plain_http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.write_all(request(addr, method, path, headers, body).as_bytes())
        .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

pub fn plain_get(base: &str, path: &str) -> Resp {
    plain_http(base, "GET", path, &[("Accept", "application/json")], None)
}

pub fn plain_send_json(base: &str, method: &str, path: &str, content_type: &str, body: &Value) -> Resp {
    plain_http(
        base,
        method,
        path,
        &[("Content-Type", content_type), ("Accept", "application/json")],
        Some(&body.to_string()),
    )
}

pub fn get(sb: &Sandbox, path: &str) -> Resp {
    http(sb, "GET", path, &[("Accept", "application/json")], None)
}

pub fn send_json(sb: &Sandbox, method: &str, path: &str, content_type: &str, body: &Value) -> Resp {
    http(
        sb,
        method,
        path,
        &[("Content-Type", content_type), ("Accept", "application/json")],
        Some(&body.to_string()),
    )
}

/// Poll until `f` holds (generous timeout; never asserts durations).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// kubectl from `$KUBECTL` or `PATH`.
pub fn kubectl_path() -> PathBuf {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return PathBuf::from(k);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("kubectl");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "kubectl not found: these tests drive a real kubectl. Install one (Debian: apt-get install kubernetes-client) or set KUBECTL=/path/to/kubectl"
    );
}

/// The kubectl client's minor version (20 for Debian's 1.20).
pub fn kubectl_minor() -> u32 {
    let out = std::process::Command::new(kubectl_path())
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("kubectl runs");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.pointer("/clientVersion/minor")
        .and_then(Value::as_str)
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .unwrap_or(0)
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn run(out: Output) -> Run {
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Run kubectl against the sandbox with its env and a private cache dir.
pub fn kubectl(sb: &Sandbox, args: &[&str]) -> Run {
    let cache = sb.state_dir().join("kube-cache");
    let mut c = sb.command(kubectl_path());
    c.arg(format!("--cache-dir={}", cache.display())).args(args);
    run(c.output().expect("kubectl runs"))
}

pub fn venv_bin(name: &str) -> PathBuf {
    podnet_sandbox::moto::find_venv(None)
        .expect("venv with moto, awscli and boto3")
        .join("bin")
        .join(name)
}

/// The venv's AWS CLI with the sandbox env.
pub fn aws(sb: &Sandbox, args: &[&str]) -> Run {
    let mut c = sb.command(venv_bin("aws"));
    c.args(args);
    run(c.output().expect("aws runs"))
}

/// The venv's Python (boto3) with the sandbox env.
pub fn python(sb: &Sandbox, code: &str) -> Run {
    let mut c = sb.command(venv_bin("python"));
    c.args(["-c", code]);
    run(c.output().expect("python runs"))
}
