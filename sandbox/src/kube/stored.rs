//! One stored object: its JSON value, the exact bytes served for it and its
//! resourceVersion. The store and the list call both handle these; neither
//! owns the type, so neither imports the other for it.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

/// A stored object: its JSON value and the exact bytes served for it.
#[derive(Debug)]
pub struct Stored {
    pub value: Value,
    pub json: Bytes,
    pub rv: u64,
}

impl Stored {
    pub fn new(value: Value, rv: u64) -> Arc<Stored> {
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Arc::new(Stored { value, json, rv })
    }

    pub fn name(&self) -> &str {
        meta_str(&self.value, "name")
    }

    pub fn namespace(&self) -> &str {
        meta_str(&self.value, "namespace")
    }

    pub fn uid(&self) -> &str {
        meta_str(&self.value, "uid")
    }
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}
