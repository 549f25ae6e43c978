//! Watches over HTTP: the query's watch options, then a chunked stream of
//! watch events (as JSON or Table rows), bookmarks every ten seconds when
//! asked for, ending at `timeoutSeconds`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::http::{Accept, KubeHttp, Query, include_object, list_opts, qbool};
use super::resources::{self, CRD};
use super::status::ApiError;
use super::table::{self, IncludeObject};
use super::watch::{WatchItem, WatchOptions, Watcher};

pub(super) fn watch_response(
    st: &KubeHttp,
    rt_idx: usize,
    ns: Option<String>,
    q: &Query,
    acc: &Accept,
) -> Result<Response, ApiError> {
    let lo = list_opts(q)?;
    let send_initial = qbool(q, "sendInitialEvents");
    let bookmarks = qbool(q, "allowWatchBookmarks");
    if send_initial {
        let rvm = q.get("resourceVersionMatch").map(String::as_str);
        if rvm != Some("NotOlderThan") || !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: [resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, allowWatchBookmarks: Required value: allowWatchBookmarks requires sendInitialEvents to be set]",
            ));
        }
    }
    let rv = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("resourceVersion: Invalid value: \"{s}\"")))?,
        ),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let watcher = st.store.watch(
        rt_idx,
        WatchOptions {
            namespace: ns,
            labels: lo.labels,
            fields: lo.fields,
            resource_version: rv,
            send_initial_events: send_initial,
        },
    )?;
    let rt = resources::get(rt_idx);
    let table_v = acc.table.clone();
    let crd = st.store.get(CRD, "", &rt.crd_name()).ok();
    let include = include_object(q);
    let state = WatchState {
        watcher,
        deadline: tokio::time::Instant::now() + timeout,
        bookmarks,
        rt: rt_idx,
        table: table_v.clone(),
        crd: crd.map(|c| c.value.clone()),
        include,
        done: false,
    };
    let stream = futures::stream::unfold(state, next_chunk);
    let mut resp = Response::new(Body::from_stream(stream));
    let ct = match &table_v {
        Some(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
        None => "application/json".to_string(),
    };
    if let Ok(h) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, h);
    }
    Ok(resp)
}

struct WatchState {
    watcher: Watcher,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    rt: usize,
    table: Option<String>,
    crd: Option<Value>,
    include: IncludeObject,
    done: bool,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

fn encode_item(s: &WatchState, item: &WatchItem) -> Bytes {
    if let (Some(tv), WatchItem::Event(kind, obj)) = (&s.table, item) {
        let t = table::table(
            resources::get(s.rt),
            s.crd.as_ref(),
            std::slice::from_ref(obj),
            json!({"resourceVersion": obj.rv.to_string()}),
            s.include,
            tv,
        );
        let mut line = serde_json::to_vec(&json!({"type": kind.as_str(), "object": t})).unwrap_or_default();
        line.push(b'\n');
        return Bytes::from(line);
    }
    Bytes::from(Watcher::encode(s.rt, item))
}

async fn next_chunk(mut s: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    if s.done {
        return None;
    }
    let tick = tokio::time::sleep(BOOKMARK_EVERY);
    tokio::pin!(tick);
    tokio::select! {
        item = s.watcher.next() => match item {
            Some(item) => {
                if matches!(item, WatchItem::Error(_)) {
                    s.done = true;
                }
                let b = encode_item(&s, &item);
                Some((Ok(b), s))
            }
            None => None,
        },
        _ = tokio::time::sleep_until(s.deadline) => None,
        _ = &mut tick, if s.bookmarks => {
            let b = encode_item(&s, &WatchItem::Bookmark { rv: s.watcher.progress_rv, initial_end: false });
            Some((Ok(b), s))
        }
    }
}
