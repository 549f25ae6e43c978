//! The typed in-process API over the store, for the seeding code and the
//! cluster controllers: `store.api::<Pod>().get("default", "x")`, and a
//! dynamic variant (`store.dyn_api(ENICONFIG)`) for custom resources. Both go
//! through the same validation, resourceVersion and watch path as HTTP.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ops::{DeleteOptions, PatchType, WriteOptions};
use super::resources::{self, Subresource};
use super::status::ApiError;
use super::store::{ListOptions, Store, meta_str};
use super::watch::{WatchItem, WatchOptions, Watcher};

/// A k8s-openapi resource type the store serves.
pub trait Kind: k8s_openapi::Resource + Serialize + DeserializeOwned {}
impl<T: k8s_openapi::Resource + Serialize + DeserializeOwned> Kind for T {}

fn decode<K: DeserializeOwned>(v: &Value) -> Result<K, ApiError> {
    serde_json::from_value(v.clone()).map_err(|e| ApiError::internal(e.to_string()))
}

fn encode<K: Serialize>(k: &K) -> Result<Value, ApiError> {
    serde_json::to_value(k).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Untyped access to one resource type.
#[derive(Clone, Copy)]
pub struct DynApi<'a> {
    store: &'a Store,
    rt: usize,
    opts_internal: bool,
}

impl<'a> DynApi<'a> {
    fn wopts(&self) -> WriteOptions {
        if self.opts_internal {
            WriteOptions::internal()
        } else {
            WriteOptions::default()
        }
    }

    pub fn get(&self, ns: &str, name: &str) -> Result<Value, ApiError> {
        let ns = if resources::get(self.rt).namespaced { ns } else { "" };
        Ok(self.store.get(self.rt, ns, name)?.value.clone())
    }

    pub fn list(&self, ns: Option<&str>, opts: &ListOptions) -> Result<Vec<Value>, ApiError> {
        Ok(self
            .store
            .list(self.rt, ns, opts)?
            .items
            .iter()
            .map(|s| s.value.clone())
            .collect())
    }

    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        let ns = meta_str(&obj, "namespace").to_string();
        Ok(self.store.create(self.rt, &ns, obj, &self.wopts())?.value.clone())
    }

    pub fn replace(&self, obj: Value) -> Result<Value, ApiError> {
        self.put(obj, None)
    }

    pub fn replace_status(&self, obj: Value) -> Result<Value, ApiError> {
        self.put(obj, Some(Subresource::Status))
    }

    fn put(&self, obj: Value, sub: Option<Subresource>) -> Result<Value, ApiError> {
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        Ok(self
            .store
            .update(self.rt, &ns, &name, obj, sub, &self.wopts())?
            .value
            .clone())
    }

    pub fn patch(&self, ns: &str, name: &str, kind: PatchType, patch: &Value) -> Result<Value, ApiError> {
        Ok(self
            .store
            .patch(self.rt, ns, name, kind, patch, None, &self.wopts())?
            .value
            .clone())
    }

    pub fn patch_status(&self, ns: &str, name: &str, kind: PatchType, patch: &Value) -> Result<Value, ApiError> {
        Ok(self
            .store
            .patch(self.rt, ns, name, kind, patch, Some(Subresource::Status), &self.wopts())?
            .value
            .clone())
    }

    /// Server-side apply with `manager` as the field manager.
    pub fn apply(&self, obj: &Value, manager: &str) -> Result<Value, ApiError> {
        let ns = meta_str(obj, "namespace").to_string();
        let name = meta_str(obj, "name").to_string();
        let opts = WriteOptions {
            field_manager: Some(manager.to_string()),
            force: true,
            ..Default::default()
        };
        Ok(self
            .store
            .patch(self.rt, &ns, &name, PatchType::Apply, obj, None, &opts)?
            .value
            .clone())
    }

    pub fn delete(&self, ns: &str, name: &str) -> Result<Value, ApiError> {
        Ok(self
            .store
            .delete(self.rt, ns, name, &DeleteOptions::default())?
            .value
            .clone())
    }

    pub fn watch(&self, opts: WatchOptions) -> Result<Watcher, ApiError> {
        self.store.watch(self.rt, opts)
    }
}

/// Typed access through a k8s-openapi type.
pub struct Api<'a, K> {
    inner: Result<DynApi<'a>, ApiError>,
    _k: PhantomData<fn() -> K>,
}

/// A typed watch event.
#[derive(Debug, Clone)]
pub enum TypedEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    Bookmark(u64),
    Error(ApiError),
}

pub struct TypedWatcher<K> {
    inner: Watcher,
    _k: PhantomData<fn() -> K>,
}

impl<K: Kind> TypedWatcher<K> {
    pub async fn next(&mut self) -> Option<TypedEvent<K>> {
        use super::store::EventType;
        let item = self.inner.next().await?;
        Some(match item {
            WatchItem::Event(kind, obj) => match decode::<K>(&obj.value) {
                Ok(k) => match kind {
                    EventType::Added => TypedEvent::Added(k),
                    EventType::Modified => TypedEvent::Modified(k),
                    EventType::Deleted => TypedEvent::Deleted(k),
                },
                Err(e) => TypedEvent::Error(e),
            },
            WatchItem::Bookmark { rv, .. } => TypedEvent::Bookmark(rv),
            WatchItem::Error(e) => TypedEvent::Error(e),
        })
    }
}

impl<'a, K: Kind> Api<'a, K> {
    fn d(&self) -> Result<&DynApi<'a>, ApiError> {
        self.inner.as_ref().map_err(Clone::clone)
    }

    pub fn get(&self, ns: &str, name: &str) -> Result<K, ApiError> {
        decode(&self.d()?.get(ns, name)?)
    }

    pub fn list(&self, ns: Option<&str>, opts: &ListOptions) -> Result<Vec<K>, ApiError> {
        self.d()?.list(ns, opts)?.iter().map(decode).collect()
    }

    pub fn create(&self, obj: &K) -> Result<K, ApiError> {
        decode(&self.d()?.create(encode(obj)?)?)
    }

    pub fn replace(&self, obj: &K) -> Result<K, ApiError> {
        decode(&self.d()?.replace(encode(obj)?)?)
    }

    pub fn replace_status(&self, obj: &K) -> Result<K, ApiError> {
        decode(&self.d()?.replace_status(encode(obj)?)?)
    }

    pub fn patch(&self, ns: &str, name: &str, kind: PatchType, patch: &Value) -> Result<K, ApiError> {
        decode(&self.d()?.patch(ns, name, kind, patch)?)
    }

    pub fn patch_status(&self, ns: &str, name: &str, kind: PatchType, patch: &Value) -> Result<K, ApiError> {
        decode(&self.d()?.patch_status(ns, name, kind, patch)?)
    }

    pub fn apply(&self, obj: &K, manager: &str) -> Result<K, ApiError> {
        decode(&self.d()?.apply(&encode(obj)?, manager)?)
    }

    pub fn delete(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        self.d()?.delete(ns, name).map(|_| ())
    }

    pub fn watch(&self, opts: WatchOptions) -> Result<TypedWatcher<K>, ApiError> {
        Ok(TypedWatcher {
            inner: self.d()?.watch(opts)?,
            _k: PhantomData,
        })
    }
}

impl Store {
    /// Typed access; in-process writes may carry status and system metadata.
    pub fn api<K: Kind>(&self) -> Api<'_, K> {
        let inner = resources::by_kind(K::API_VERSION, K::KIND)
            .map(|rt| DynApi {
                store: self,
                rt,
                opts_internal: true,
            })
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("the server could not find the requested resource ({})", K::KIND),
                )
            });
        Api { inner, _k: PhantomData }
    }

    /// Untyped access by resource type index (`resources::ENICONFIG`, …).
    pub fn dyn_api(&self, rt: usize) -> DynApi<'_> {
        DynApi {
            store: self,
            rt,
            opts_internal: true,
        }
    }
}
