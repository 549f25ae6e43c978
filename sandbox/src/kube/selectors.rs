//! Label selectors (string form as in `?labelSelector=`, and the structured
//! `metav1.LabelSelector` form of PDBs and workloads) and field selectors,
//! with the grammar and error wording of apimachinery's `labels.Parse` and
//! `fields.ParseSelector`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let got = labels.and_then(|l| l.get(&self.key)).and_then(Value::as_str);
        match self.op {
            Op::Equals | Op::In => got.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEquals | Op::NotIn => got.is_none_or(|v| self.values.iter().all(|x| x != v)),
            Op::Exists => got.is_some(),
            Op::DoesNotExist => got.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(v), Some(bound)) = (
                    got.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn valid_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let ok_name = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let ok_prefix = prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && !p.contains('/'));
    if ok_name && ok_prefix {
        Ok(())
    } else {
        Err(format!(
            "key: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

fn valid_value(v: &str) -> Result<(), String> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "values[0][key]: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn eat(&mut self, tok: &str) -> bool {
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_key_char) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parse the string form (`app=web,tier in (a,b),!legacy`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut lx = Lexer { s, pos: 0 };
        let mut reqs = Vec::new();
        lx.skip_ws();
        if lx.peek().is_none() {
            return Ok(LabelSelector::default());
        }
        loop {
            lx.skip_ws();
            let negated = lx.eat("!");
            lx.skip_ws();
            let key = lx.word().to_string();
            if key.is_empty() {
                return Err(format!(
                    "unable to parse requirement: found '{}', expected: identifier",
                    lx.peek().map(String::from).unwrap_or_default()
                ));
            }
            valid_key(&key).map_err(|e| format!("unable to parse requirement: {e}"))?;
            lx.skip_ws();
            let req = if negated {
                Requirement {
                    key,
                    op: Op::DoesNotExist,
                    values: vec![],
                }
            } else if lx.peek().is_none() || lx.peek() == Some(',') {
                Requirement {
                    key,
                    op: Op::Exists,
                    values: vec![],
                }
            } else {
                let op = if lx.eat("==") || lx.eat("=") {
                    Op::Equals
                } else if lx.eat("!=") {
                    Op::NotEquals
                } else if lx.eat(">") {
                    Op::GreaterThan
                } else if lx.eat("<") {
                    Op::LessThan
                } else {
                    let w = lx.word();
                    match w {
                        "in" => Op::In,
                        "notin" => Op::NotIn,
                        other => {
                            return Err(format!(
                                "unable to parse requirement: found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                            ));
                        }
                    }
                };
                lx.skip_ws();
                let values = if matches!(op, Op::In | Op::NotIn) {
                    if !lx.eat("(") {
                        return Err("unable to parse requirement: found '', expected: '('".to_string());
                    }
                    let mut vals = Vec::new();
                    loop {
                        lx.skip_ws();
                        let v = lx.word().to_string();
                        lx.skip_ws();
                        valid_value(&v).map_err(|e| format!("unable to parse requirement: {e}"))?;
                        vals.push(v);
                        if lx.eat(",") {
                            continue;
                        }
                        if lx.eat(")") {
                            break;
                        }
                        return Err("unable to parse requirement: found '', expected: ',' or ')'".to_string());
                    }
                    vals
                } else {
                    let v = lx.word().to_string();
                    valid_value(&v).map_err(|e| format!("unable to parse requirement: {e}"))?;
                    if matches!(op, Op::GreaterThan | Op::LessThan) && v.parse::<i64>().is_err() {
                        return Err(format!(
                            "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer, got {v}"
                        ));
                    }
                    vec![v]
                };
                Requirement { key, op, values }
            };
            reqs.push(req);
            lx.skip_ws();
            if lx.peek().is_none() {
                break;
            }
            if !lx.eat(",") {
                return Err(format!(
                    "unable to parse requirement: found '{}', expected: ',' or 'end of string'",
                    lx.peek().map(String::from).unwrap_or_default()
                ));
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    /// Convert a `metav1.LabelSelector` (`matchLabels` + `matchExpressions`).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in ml {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![val.as_str().unwrap_or_default().to_string()],
                });
            }
        }
        if let Some(exprs) = v.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or("matchExpressions: key is required")?
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In,
                    Some("NotIn") => Op::NotIn,
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => return Err(format!("{other:?} is not a valid label selector operator")),
                };
                reqs.push(Requirement { key, op, values });
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Does the object's `metadata.labels` match?
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty()
            || self.matches(
                obj.get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(Value::as_object),
            )
    }

    /// The string form, as `Scale.status.selector` and printers show it.
    pub fn to_string_form(&self) -> String {
        self.requirements
            .iter()
            .map(|r| match r.op {
                Op::Equals => format!("{}={}", r.key, r.values.join("")),
                Op::NotEquals => format!("{}!={}", r.key, r.values.join("")),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::GreaterThan => format!("{}>{}", r.key, r.values.join("")),
                Op::LessThan => format!("{}<{}", r.key, r.values.join("")),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One `field=value` / `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub equals: bool,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

/// Split on unescaped `sep`, honouring `\` escapes as `fields.ParseSelector`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for part in split_escaped(s, ',') {
            let (field, equals, value) = if let Some(i) = find_unescaped(&part, "!=") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = find_unescaped(&part, "==") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = find_unescaped(&part, "=") {
                (&part[..i], true, &part[i + 1..])
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{part}'"));
            };
            terms.push(FieldTerm {
                field: field.trim().to_string(),
                equals,
                value: unescape(value.trim()),
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value a `field=` term requires, if the selector has one (used to
    /// answer `spec.nodeName=X` from an index).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.equals)
            .map(|t| t.value.as_str())
    }

    /// Evaluate against an object, reading fields through `get`, which
    /// returns the field's string form (missing fields read as "").
    pub fn matches(&self, get: impl Fn(&str) -> String) -> bool {
        self.terms.iter().all(|t| (get(&t.field) == t.value) == t.equals)
    }
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn equality_and_sets() {
        let l = labels(json!({"app": "web", "tier": "front", "env": "prod"}));
        let t = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(t("app=web"));
        assert!(t("app==web"));
        assert!(!t("app!=web"));
        assert!(t("app=web,tier=front"));
        assert!(t("tier in (front, back)"));
        assert!(!t("tier notin (front)"));
        assert!(t("tier notin (back)"));
        assert!(t("env"));
        assert!(!t("!env"));
        assert!(t("!missing"));
        assert!(t("missing notin (x)"));
        assert!(!t("missing in (x)"));
        assert!(t(""));
        assert!(t("  app = web , env in (prod,dev) "));
    }

    #[test]
    fn gt_lt() {
        let l = labels(json!({"n": "5"}));
        assert!(LabelSelector::parse("n>3").unwrap().matches(Some(&l)));
        assert!(!LabelSelector::parse("n<3").unwrap().matches(Some(&l)));
        assert!(LabelSelector::parse("n>x").is_err());
    }

    #[test]
    fn parse_errors() {
        assert!(LabelSelector::parse("app=web,").is_err());
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("app=we b").is_err());
        assert!(LabelSelector::parse("app=-bad").is_err());
    }

    #[test]
    fn structured_selector() {
        let sel = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
        }))
        .unwrap();
        assert!(sel.matches(Some(&labels(json!({"app": "web", "tier": "b"})))));
        assert!(!sel.matches(Some(&labels(json!({"app": "web", "tier": "c"})))));
        assert!(!sel.matches(None));
        assert_eq!(sel.to_string_form(), "app=web,tier in (a,b)");
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        assert_eq!(f.required("spec.nodeName"), Some("n1"));
        assert!(f.matches(|k| match k {
            "spec.nodeName" => "n1".into(),
            "status.phase" => "Running".into(),
            _ => String::new(),
        }));
        assert!(!f.matches(|k| match k {
            "spec.nodeName" => "n1".into(),
            "status.phase" => "Failed".into(),
            _ => String::new(),
        }));
        let e = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(e.terms[0].value, "a,b");
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(FieldSelector::parse("").unwrap().is_empty());
    }
}
