//! IAM identity-based policy documents as IAM reads them: `Version`, one
//! statement or a list, each with `Effect`, `Action` or `NotAction`,
//! `Resource` or `NotResource`, and an optional `Condition` block. A
//! document IAM would refuse is refused here with IAM's
//! `MalformedPolicyDocument` reasons ("IAM JSON policy element reference",
//! IAM User Guide): a `Principal` in an identity policy, a missing
//! `Effect`, an action without a service prefix, an unknown element, a
//! condition operator IAM does not have.

use std::collections::BTreeMap;

use serde_json::Value;

/// Why a policy document is malformed (IAM's `MalformedPolicyDocument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MalformedPolicyDocument: {0}")]
pub struct PolicyError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action`/`Resource` (the listed patterns) or `NotAction`/`NotResource`
/// (everything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    Only(Vec<String>),
    AllBut(Vec<String>),
}

/// The condition operators IAM has ("IAM JSON policy elements: Condition
/// operators"); date, numeric and IP operators are not modelled, since no
/// key the sandbox puts in a request context takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Bool,
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        Some(match name {
            "StringEquals" => Operator::StringEquals,
            "StringNotEquals" => Operator::StringNotEquals,
            "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
            "StringLike" => Operator::StringLike,
            "StringNotLike" => Operator::StringNotLike,
            "ArnEquals" => Operator::ArnEquals,
            "ArnNotEquals" => Operator::ArnNotEquals,
            "ArnLike" => Operator::ArnLike,
            "ArnNotLike" => Operator::ArnNotLike,
            "Bool" => Operator::Bool,
            "Null" => Operator::Null,
            _ => return None,
        })
    }

    /// The negated operators match a request that lacks the key ("a
    /// negated matching condition operator … returns true if the key is not
    /// present", IAM User Guide, "Condition operators").
    pub fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }
}

/// `ForAnyValue:` / `ForAllValues:` on a multivalued key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOperator {
    /// No qualifier: the key is single-valued.
    Single,
    ForAnyValue,
    ForAllValues,
}

/// One key test of a `Condition` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub set: SetOperator,
    /// `…IfExists`: true when the request lacks the key.
    pub if_exists: bool,
    /// Lower-cased: condition key names are case-insensitive.
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Patterns,
    pub resources: Patterns,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "NotPrincipal",
];

fn bad(msg: impl Into<String>) -> PolicyError {
    PolicyError(msg.into())
}

/// A string or a list of strings; scalars in a `Condition` may also be
/// booleans or numbers, which IAM compares as their text.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(format!("{what} must be a string or a list of strings"))),
    };
    match v {
        Value::Array(items) if items.is_empty() => Err(bad(format!("{what} must not be an empty list"))),
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn patterns(s: &serde_json::Map<String, Value>, plain: &str, not: &str) -> Result<Patterns, PolicyError> {
    match (s.get(plain), s.get(not)) {
        (Some(_), Some(_)) => Err(bad(format!("a statement has both {plain} and {not}"))),
        (Some(v), None) => Ok(Patterns::Only(strings(v, plain)?)),
        (None, Some(v)) => Ok(Patterns::AllBut(strings(v, not)?)),
        (None, None) => Err(bad(format!(
            "Policy statement must contain {}",
            plain.to_lowercase() + "s"
        ))),
    }
}

fn check_action(a: &str) -> Result<(), PolicyError> {
    if a == "*" {
        return Ok(());
    }
    match a.split_once(':') {
        Some((service, name)) if !service.is_empty() && !name.is_empty() && !service.contains('*') => Ok(()),
        _ => Err(bad(format!(
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. (got {a:?})"
        ))),
    }
}

fn conditions(v: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(block) = v else {
        return Err(bad("Condition must be an object of operators"));
    };
    let mut out = vec![];
    for (name, tests) in block {
        let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (SetOperator::ForAnyValue, r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (SetOperator::ForAllValues, r)
        } else {
            (SetOperator::Single, name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let operator = Operator::parse(base).ok_or_else(|| bad(format!("Invalid Condition type : {name}")))?;
        let Value::Object(tests) = tests else {
            return Err(bad(format!("Condition {name} must map keys to values")));
        };
        for (key, values) in tests {
            out.push(Condition {
                operator,
                set,
                if_exists,
                key: key.to_ascii_lowercase(),
                values: strings(values, &format!("Condition {name} {key}"))?,
            });
        }
    }
    Ok(out)
}

fn statement(v: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(s) = v else {
        return Err(bad("each Statement must be an object"));
    };
    if let Some(k) = s.keys().find(|k| !STATEMENT_ELEMENTS.contains(&k.as_str())) {
        return Err(bad(format!("Syntax errors in policy: unknown element {k:?}")));
    }
    if s.contains_key("Principal") || s.contains_key("NotPrincipal") {
        return Err(bad("Policy document should not specify a principal."));
    }
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => return Err(bad(format!("Invalid effect: {other}"))),
        None => return Err(bad("Missing required field Effect")),
    };
    let actions = patterns(s, "Action", "NotAction")?;
    let (Patterns::Only(list) | Patterns::AllBut(list)) = &actions;
    list.iter().try_for_each(|a| check_action(a))?;
    let resources = patterns(s, "Resource", "NotResource")?;
    let conditions = match s.get("Condition") {
        Some(c) => conditions(c)?,
        None => vec![],
    };
    Ok(Statement {
        sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
        effect,
        actions,
        resources,
        conditions,
    })
}

impl Policy {
    /// Reads a policy document from its JSON text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("Syntax errors in policy: {e}")))?;
        Policy::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Policy, PolicyError> {
        let Value::Object(doc) = v else {
            return Err(bad("the policy document must be a JSON object"));
        };
        if let Some(k) = doc
            .keys()
            .find(|k| !["Version", "Id", "Statement"].contains(&k.as_str()))
        {
            return Err(bad(format!("Syntax errors in policy: unknown element {k:?}")));
        }
        match doc.get("Version").and_then(Value::as_str) {
            None | Some("2012-10-17") | Some("2008-10-17") => {}
            Some(v) => return Err(bad(format!("The policy failed legacy parsing: Version {v:?}"))),
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.iter().map(statement).collect::<Result<Vec<_>, _>>()?,
            Some(one @ Value::Object(_)) => vec![statement(one)?],
            _ => return Err(bad("Missing required field Statement")),
        };
        Ok(Policy { statements })
    }

    /// `AdministratorAccess`: what every sandbox principal has until a
    /// policy is attached.
    pub fn administrator() -> Policy {
        Policy {
            statements: vec![Statement {
                sid: None,
                effect: Effect::Allow,
                actions: Patterns::Only(vec!["*".into()]),
                resources: Patterns::Only(vec!["*".into()]),
                conditions: vec![],
            }],
        }
    }
}

/// A request's condition keys (lower-cased names) and their values.
pub type Keys = BTreeMap<String, Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_or_a_list_and_every_scalar_form() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*",
                "Condition":{"ForAnyValue:StringLikeIfExists":{"aws:TagKeys":["a*", "b"]},"Bool":{"aws:SecureTransport":true}}}}"#,
        )
        .unwrap();
        let s = &p.statements[0];
        assert_eq!(s.actions, Patterns::Only(vec!["ec2:Describe*".into()]));
        assert_eq!(s.conditions.len(), 2);
        let tags = s.conditions.iter().find(|c| c.key == "aws:tagkeys").unwrap();
        assert_eq!(
            (tags.operator, tags.set, tags.if_exists),
            (Operator::StringLike, SetOperator::ForAnyValue, true)
        );
        assert_eq!(
            s.conditions
                .iter()
                .find(|c| c.key == "aws:securetransport")
                .unwrap()
                .values,
            ["true"]
        );
    }

    #[test]
    fn what_iam_refuses_is_refused_naming_the_element() {
        let refuse = |doc: &str| Policy::parse(doc).unwrap_err().0;
        assert!(refuse(r#"{"Statement":[{"Action":"ec2:*","Resource":"*"}]}"#).contains("Effect"));
        assert!(
            refuse(r#"{"Statement":[{"Effect":"Allow","Action":"CreateSubnet","Resource":"*"}]}"#).contains("vendor")
        );
        assert!(refuse(r#"{"Statement":[{"Effect":"Allow","Action":"ec2:*"}]}"#).contains("resources"));
        assert!(
            refuse(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ec2:*","Resource":"*"}]}"#)
                .contains("principal")
        );
        assert!(
            refuse(r#"{"Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*","Condition":{"StringSorta":{"a":"b"}}}]}"#)
                .contains("StringSorta")
        );
        assert!(refuse(r#"{"Statement":[{"Effect":"Allow","Actions":"ec2:*","Resource":"*"}]}"#).contains("Actions"));
        assert!(refuse("not json").contains("Syntax"));
    }
}
