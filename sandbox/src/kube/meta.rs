//! Small object-metadata helpers shared by every write path: timestamps in
//! the apiserver's RFC 3339 form, `generateName` suffixes, and mutable access
//! to `metadata`. They sit below `ops`, `derived` and the eviction handler so
//! none of those needs to import another for them.

use serde_json::{Map, Value, json};

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn random_suffix(n: usize) -> String {
    // the apiserver's alphabet for generateName (no vowels, no confusables)
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    (0..n)
        .map(|i| ALPHABET[bytes[i % 16] as usize % ALPHABET.len()] as char)
        .collect()
}

pub(crate) fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    match v.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}
