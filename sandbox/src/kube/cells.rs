//! Cell formats of the apiserver's printers, shared by every kind's
//! printer: apimachinery's `HumanDuration` ages, `<none>` for empty cells,
//! container and image lists, label selectors, and the subset of JSONPath
//! that printer columns use.

use serde_json::{Value, json};

use super::selectors::LabelSelector;
use super::store::meta_str;

/// `duration.HumanDuration` of apimachinery.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

pub(super) fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

pub(super) fn age(v: &Value) -> String {
    age_of(meta_str(v, "creationTimestamp"))
}

pub(super) fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn or_none(x: &str) -> Value {
    if x.is_empty() { json!("<none>") } else { json!(x) }
}

pub(super) fn col(name: &str, ty: &str, priority: u8) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": "", "description": "", "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
        c["description"] = json!("Name must be unique within a namespace. Is required when creating resources.");
    }
    c
}

pub(super) fn containers_images(spec: &Value) -> (String, String) {
    let cs = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.get("image").and_then(Value::as_str))
        .collect();
    (names.join(","), images.join(","))
}

pub(super) fn selector_str(v: Option<&Value>) -> Value {
    match v.and_then(|s| LabelSelector::from_json(s).ok()) {
        Some(sel) if !sel.is_empty() => json!(sel.to_string_form()),
        _ => json!("<none>"),
    }
}

/// Evaluate the subset of JSONPath used by printer columns:
/// `.a.b`, escaped dots (`node\.kubernetes\.io/x`), `[N]` and
/// `[?(@.type=="Ready")]`.
pub fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut segs: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = path.trim_start_matches('.').chars().peekable();
    let mut in_bracket = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if !in_bracket => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '.' if !in_bracket => segs.push(std::mem::take(&mut cur)),
            '[' => {
                if !cur.is_empty() {
                    segs.push(std::mem::take(&mut cur));
                }
                in_bracket = true;
                cur.push('[');
            }
            ']' => {
                cur.push(']');
                in_bracket = false;
                segs.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    let mut node = v;
    for seg in segs.iter().filter(|s| !s.is_empty()) {
        if let Some(inner) = seg.strip_prefix("[?(@.").and_then(|x| x.strip_suffix(")]")) {
            let (field, want) = inner.split_once("==")?;
            let want = want.trim().trim_matches('"').trim_matches('\'');
            node = node
                .as_array()?
                .iter()
                .find(|e| e.get(field.trim()).and_then(Value::as_str) == Some(want))?;
        } else if let Some(idx) = seg.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            node = node.as_array()?.get(idx.parse::<usize>().ok()?)?;
        } else {
            node = node.get(seg.as_str())?;
        }
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }

    #[test]
    fn printer_json_path() {
        let v = json!({"metadata": {"labels": {"node.kubernetes.io/instance-type": "t3.large"}},
            "status": {"conditions": [{"type": "Launched", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        assert_eq!(
            json_path(&v, r".metadata.labels.node\.kubernetes\.io/instance-type"),
            Some(&json!("t3.large"))
        );
        assert_eq!(
            json_path(&v, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("False"))
        );
        assert_eq!(json_path(&v, ".status.conditions[0].type"), Some(&json!("Launched")));
        assert_eq!(json_path(&v, ".spec.missing"), None);
    }
}
