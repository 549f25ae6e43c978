//! The simulated Kubernetes API server: an in-memory store of k8s-openapi
//! objects served over HTTPS on loopback (see [`crate::auth`] for TLS,
//! tokens and access entries), with the discovery, verbs,
//! patch types, selectors, pagination, watches, Table output, eviction and
//! Status errors that kubectl and kube-rs rely on.

pub mod admission;
pub mod aggregation;
pub mod api;
mod apply;
mod cells;
pub mod crds;
mod create;
mod delete;
pub mod derived;
pub mod discovery;
mod eviction;
pub mod handlers;
pub mod hash;
mod http;
mod listing;
mod meta;
pub mod openapi;
pub mod ops;
mod options;
pub mod patch;
mod printers;
pub mod proxy;
pub mod resources;
pub mod selectors;
mod serve;
pub mod status;
pub mod store;
mod stored;
pub mod table;
mod update;
mod validate;
pub mod watch;
mod watch_http;

use std::sync::Arc;

use axum::Router;

pub use api::{Api, DynApi, Kind, TypedEvent, TypedWatcher};
pub use ops::{DeleteOptions, PatchType, WriteOptions};
pub use status::ApiError;
pub use store::{ListOptions, Store, Stored};
pub use watch::{WatchItem, WatchOptions};

use crate::auth::Auth;
use crate::calls::CallLog;

/// The axum router serving the Kubernetes API for `store`.
pub fn router(store: Arc<Store>, calls: Arc<CallLog>, server_address: String, auth: Arc<Auth>) -> Router {
    Router::new().fallback(handlers::handle).with_state(handlers::KubeHttp {
        store,
        calls,
        server_address,
        auth,
    })
}
