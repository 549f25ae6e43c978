//! The hashes apimachinery derives from objects: `pod-template-hash` and
//! `controller-revision-hash` values, in its safe alphabet. The derived
//! status of Deployments needs them as much as the workload controllers
//! that stamp them, so they live with the API server rather than with the
//! controllers.

use serde_json::Value;

/// apimachinery's alphabet for generated names and hashes: no vowels (so
/// no words form by accident) and no 0, 1 or 3 (easily misread).
pub(crate) const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a 32 of the template, in apimachinery's safe alphabet: the shape of
/// `pod-template-hash` and `controller-revision-hash` values.
pub fn template_hash(template: &Value) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    let mut out = String::new();
    let mut x = h;
    loop {
        out.push(SAFE[(x % SAFE.len() as u32) as usize] as char);
        x /= SAFE.len() as u32;
        if x == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hashes_are_stable_and_safe() {
        let t = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(template_hash(&t), template_hash(&t));
        assert!(template_hash(&t).bytes().all(|b| SAFE.contains(&b)));
    }
}
