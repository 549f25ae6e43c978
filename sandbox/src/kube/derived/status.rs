//! Writing a derived status back: commit only when it changed (so watchers
//! see no empty MODIFIED events), conditions that keep their
//! lastTransitionTime while unchanged (k8s.io/apimachinery
//! `pkg/api/meta/conditions.go` `SetStatusCondition`), and int-or-percent
//! scaling as `intstr.GetScaledValueFromIntOrPercent` rounds it.

use serde_json::{Map, Value, json};

use crate::kube::meta::now_rfc3339;
use crate::kube::store::{Inner, Key};

/// Commit a new status if it differs; returns whether it changed.
pub(crate) fn set_status(inner: &mut Inner, rt: usize, key: &Key, status: Value) -> bool {
    let Some(cur) = inner.tables[rt].objects.get(key).cloned() else {
        return false;
    };
    if cur.value.get("status") == Some(&status) {
        return false;
    }
    let mut v = cur.value.clone();
    v["status"] = status;
    inner.commit(rt, key.clone(), Some(v), None);
    true
}

pub(crate) fn condition(
    old_status: Option<&Value>,
    ctype: &str,
    status: bool,
    reason: &str,
    message: &str,
    extra: Option<(&str, Value)>,
) -> Value {
    let status_s = if status { "True" } else { "False" };
    let prev = old_status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(ctype)));
    let same = prev.is_some_and(|p| {
        p.get("status").and_then(Value::as_str) == Some(status_s)
            && p.get("reason").and_then(Value::as_str) == Some(reason)
    });
    let stamp = |k: &str| {
        prev.filter(|_| same)
            .and_then(|p| p.get(k).cloned())
            .unwrap_or_else(|| json!(now_rfc3339()))
    };
    let mut c = json!({
        "type": ctype,
        "status": status_s,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp("lastTransitionTime"),
    });
    if let Some((k, v)) = extra {
        c[k] = v;
    }
    c
}

/// An int-or-percent of `total` (rounded up or down).
pub(crate) fn scaled(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct = s.trim_end_matches('%').parse::<f64>().unwrap_or(0.0);
            let x = pct * total as f64 / 100.0;
            if round_up { x.ceil() as i64 } else { x.floor() as i64 }
        }
        _ => 0,
    }
}

pub(crate) fn put_nonzero(m: &mut Map<String, Value>, k: &str, n: i64) {
    if n != 0 {
        m.insert(k.into(), json!(n));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn percentages_round_as_the_apiserver() {
        assert_eq!(scaled(&json!("10%"), 11, true), 2);
        assert_eq!(scaled(&json!("25%"), 10, false), 2);
        assert_eq!(scaled(&json!(3), 10, true), 3);
    }
}
