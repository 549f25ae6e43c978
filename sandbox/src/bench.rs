//! Store and HTTP timings on a large scenario (1,000 nodes, 30,000 pods by
//! default), for `podnet-sandbox bench` and `cargo bench`. Figures are
//! printed, never asserted: wall-clock limits do not belong in tests.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::kube::ListOptions;
use crate::kube::resources::{NODE, POD};
use crate::kube::selectors::{FieldSelector, LabelSelector};
use crate::{Sandbox, SandboxError, SandboxOptions, Scenario};

/// A minimal HTTP/1.0 GET over TLS, as the sandbox admin, returning the
/// body length.
fn http_get_len(sb: &Sandbox, path: &str) -> usize {
    use std::io::{Read, Write};
    let addr = sb.kube_url().trim_start_matches("https://");
    let Ok(mut s) = crate::auth::tls::blocking_stream(addr, sb.kube_ca_pem()) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
        sb.admin_token()
    );
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let body_at = buf.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
    buf.len() - body_at
}

/// Seed `scenario` into a sandbox without moto and time lists; returns the
/// report.
pub fn run(scenario: &Path, iterations: u32) -> Result<String, SandboxError> {
    let scenario = Scenario::load(&scenario.display().to_string())?;
    let t = Instant::now();
    let sb = Sandbox::start(SandboxOptions {
        scenario,
        moto: false,
        ..Default::default()
    })?;
    let store = sb.store();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seeded {} nodes, {} pods (no moto) in {:.2}s",
        store.count(NODE),
        store.count(POD),
        t.elapsed().as_secs_f64()
    );
    let mut time = |label: &str, unit: &str, f: &mut dyn FnMut() -> usize| {
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..iterations.max(1) {
            let t = Instant::now();
            n = f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let _ = writeln!(out, "{label:<46} {n:>9} {unit:<5}  best {:>9.3} ms", best * 1000.0);
    };
    let count =
        |r: Result<crate::kube::store::ListResult, crate::kube::ApiError>| r.map(|r| r.items.len()).unwrap_or(0);
    time("store list pods (all namespaces)", "items", &mut || {
        count(store.list(POD, None, &ListOptions::default()))
    });
    let node = sb.world().nodes.first().map(|n| n.name.clone()).unwrap_or_default();
    let by_node = ListOptions {
        fields: FieldSelector::parse(&format!("spec.nodeName={node}")).unwrap_or_default(),
        ..Default::default()
    };
    time("store list pods spec.nodeName=<node>", "items", &mut || {
        count(store.list(POD, None, &by_node))
    });
    let app = store
        .list(
            POD,
            Some("default"),
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .ok()
        .and_then(|r| {
            r.items.first().and_then(|p| {
                p.value
                    .pointer("/metadata/labels/app")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| "none".into());
    let labelled = ListOptions {
        labels: LabelSelector::parse(&format!("app={app}")).unwrap_or_default(),
        ..Default::default()
    };
    time(&format!("store list pods app={app}"), "items", &mut || {
        count(store.list(POD, None, &labelled))
    });
    time("store list nodes", "items", &mut || {
        count(store.list(NODE, None, &ListOptions::default()))
    });
    time("HTTP GET /api/v1/pods (all, one response)", "bytes", &mut || {
        http_get_len(&sb, "/api/v1/pods")
    });
    time("HTTP GET /api/v1/pods?limit=500 (first page)", "bytes", &mut || {
        http_get_len(&sb, "/api/v1/pods?limit=500")
    });
    time("HTTP GET pods fieldSelector=spec.nodeName", "bytes", &mut || {
        http_get_len(&sb, &format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}"))
    });
    Ok(out)
}
