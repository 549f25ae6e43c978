//! Policy evaluation for one request, as IAM's evaluation logic decides
//! within one account with identity-based policies only ("Policy
//! evaluation logic", IAM User Guide): an explicit `Deny` in any matching
//! statement wins; otherwise a matching `Allow` allows; otherwise the
//! request is implicitly denied. A request that touches several resources
//! (`CreateSubnet`: the VPC and the new subnet) is allowed only when each
//! one is, each with its own condition keys — EC2's resource-level
//! permissions work this way ("Resource-level permissions for Amazon EC2").

use super::policy::{Condition, Effect, Keys, Operator, Patterns, Policy, SetOperator, Statement};

/// One resource of a request, with the condition keys that belong to it
/// (`ec2:Vpc`, `aws:ResourceTag/…`). Actions without resource-level
/// permissions are authorized against `*`, which only a `"Resource": "*"`
/// statement matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub arn: String,
    pub keys: Keys,
}

impl Resource {
    pub fn any() -> Resource {
        Resource {
            arn: "*".into(),
            keys: Keys::new(),
        }
    }

    pub fn new(arn: impl Into<String>) -> Resource {
        Resource {
            arn: arn.into(),
            keys: Keys::new(),
        }
    }

    pub fn key(mut self, k: &str, v: impl Into<String>) -> Resource {
        self.keys.entry(k.to_ascii_lowercase()).or_default().push(v.into());
        self
    }
}

/// What is asked: an IAM action (`ec2:CreateSubnet`), its resources and
/// the request-wide keys (`aws:RequestTag/…`, `aws:TagKeys`,
/// `aws:RequestedRegion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: String,
    pub resources: Vec<Resource>,
    pub keys: Keys,
}

impl Request {
    pub fn new(action: impl Into<String>, resources: Vec<Resource>) -> Request {
        Request {
            action: action.into(),
            resources,
            keys: Keys::new(),
        }
    }

    pub fn key(mut self, k: &str, v: impl Into<String>) -> Request {
        self.keys.entry(k.to_ascii_lowercase()).or_default().push(v.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows `resource`.
    ImplicitDeny {
        resource: String,
    },
    /// A `Deny` statement matched `resource`.
    ExplicitDeny {
        resource: String,
    },
}

/// IAM's wildcard match: `*` any run of characters, `?` exactly one.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matching with one backtrack point per `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An ARN pattern against an ARN, segment by segment: a wildcard does not
/// reach across the `:` between partition, service, region, account and
/// resource (the resource itself may hold `:` and `/`). `*` alone matches
/// everything.
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == a.len() && p.iter().zip(&a).all(|(p, a)| glob(p, a, false))
}

fn matches(patterns: &Patterns, value: &str, ignore_case: bool) -> bool {
    let one = |p: &String| {
        if ignore_case {
            glob(p, value, true)
        } else {
            arn_matches(p, value)
        }
    };
    match patterns {
        Patterns::Only(list) => list.iter().any(one),
        Patterns::AllBut(list) => !list.iter().any(one),
    }
}

/// One request value against one policy value.
fn value_matches(op: Operator, policy: &str, request: &str) -> bool {
    match op {
        Operator::StringEquals | Operator::StringNotEquals => policy == request,
        Operator::StringEqualsIgnoreCase | Operator::StringNotEqualsIgnoreCase | Operator::Bool => {
            policy.eq_ignore_ascii_case(request)
        }
        Operator::StringLike | Operator::StringNotLike => glob(policy, request, false),
        // "ArnEquals … behaves like ArnLike" (IAM condition operators).
        Operator::ArnEquals | Operator::ArnNotEquals | Operator::ArnLike | Operator::ArnNotLike => {
            arn_matches(policy, request)
        }
        Operator::Null => false,
    }
}

fn condition_holds(c: &Condition, values: Option<&Vec<String>>) -> bool {
    let values = values.filter(|v| !v.is_empty());
    if c.operator == Operator::Null {
        // `"Null": {"k": "true"}`: the key is absent.
        let absent = values.is_none();
        return c.values.iter().any(|v| v.eq_ignore_ascii_case(&absent.to_string()));
    }
    let Some(values) = values else {
        return match c.set {
            // "ForAllValues … returns true if … there are no keys in the
            // request"; ForAnyValue never matches a missing key.
            SetOperator::ForAllValues => true,
            SetOperator::ForAnyValue => false,
            SetOperator::Single => c.if_exists || c.operator.negated(),
        };
    };
    let any_policy = |r: &String| c.values.iter().any(|p| value_matches(c.operator, p, r));
    // A request value "holds" when it matches a policy value (for a negated
    // operator: when it matches none).
    let holds = |r: &String| any_policy(r) != c.operator.negated();
    match c.set {
        // A single-valued key with a negated operator: no value may match.
        SetOperator::Single if c.operator.negated() => values.iter().all(holds),
        SetOperator::Single | SetOperator::ForAnyValue => values.iter().any(holds),
        SetOperator::ForAllValues => values.iter().all(holds),
    }
}

fn statement_applies(s: &Statement, req: &Request, res: &Resource) -> bool {
    // Action names are case-insensitive; ARNs are not.
    matches(&s.actions, &req.action, true)
        && matches(&s.resources, &res.arn, false)
        && s.conditions.iter().all(|c| {
            let values = res.keys.get(&c.key).or_else(|| req.keys.get(&c.key));
            condition_holds(c, values)
        })
}

/// The decision for `req` under `policy`.
pub fn evaluate(policy: &Policy, req: &Request) -> Decision {
    let resources: Vec<Resource> = if req.resources.is_empty() {
        vec![Resource::any()]
    } else {
        req.resources.clone()
    };
    let mut implicit = None;
    for res in &resources {
        let applying: Vec<&Statement> = policy
            .statements
            .iter()
            .filter(|s| statement_applies(s, req, res))
            .collect();
        if applying.iter().any(|s| s.effect == Effect::Deny) {
            return Decision::ExplicitDeny {
                resource: res.arn.clone(),
            };
        }
        if implicit.is_none() && !applying.iter().any(|s| s.effect == Effect::Allow) {
            implicit = Some(res.arn.clone());
        }
    }
    match implicit {
        Some(resource) => Decision::ImplicitDeny { resource },
        None => Decision::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_iam() {
        assert!(glob("ec2:Describe*", "ec2:describevpcs", true));
        assert!(!glob("ec2:Describe*", "ec2:describevpcs", false));
        assert!(glob(
            "arn:aws:ec2:*:*:subnet/*",
            "arn:aws:ec2:us-east-1:1:subnet/subnet-1",
            false
        ));
        assert!(!glob(
            "arn:aws:ec2:*:*:subnet/*",
            "arn:aws:ec2:us-east-1:1:vpc/vpc-1",
            false
        ));
        assert!(glob("subnet-?", "subnet-1", false) && !glob("subnet-?", "subnet-12", false));
        assert!(glob("*", "*", false) && !glob("arn:*", "*", false));
        assert!(arn_matches("arn:aws:ec2:*:*:subnet/*", "arn:aws:ec2:r:1:subnet/s-1"));
        assert!(!arn_matches("arn:aws:*", "arn:aws:ec2:r:1:subnet/s-1"), "* stops at :");
        assert!(arn_matches(
            "arn:aws:eks:r:1:nodegroup/c/*/*",
            "arn:aws:eks:r:1:nodegroup/c/ng/0a1b"
        ));
        assert!(arn_matches("*", "*") && !arn_matches("arn:aws:ec2:r:1:vpc/*", "*"));
    }

    #[test]
    fn for_any_value_with_a_negated_operator_needs_one_value_outside_the_list() {
        let p = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"ec2:CreateTags","Resource":"*",
            "Condition":{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["team"]}}}]}"#,
        )
        .unwrap();
        let req = |keys: &[&str]| {
            keys.iter()
                .fold(Request::new("ec2:CreateTags", vec![Resource::any()]), |r, k| {
                    r.key("aws:TagKeys", *k)
                })
        };
        assert_eq!(evaluate(&p, &req(&["team", "cost"])), Decision::Allow);
        assert!(matches!(evaluate(&p, &req(&["team"])), Decision::ImplicitDeny { .. }));
        assert!(
            matches!(evaluate(&p, &req(&[])), Decision::ImplicitDeny { .. }),
            "missing: false"
        );
    }

    fn policy(doc: &str) -> Policy {
        Policy::parse(doc).unwrap()
    }

    const SUBNETS: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ec2:CreateSubnet","Resource":"arn:aws:ec2:r:1:vpc/vpc-1"},
        {"Effect":"Allow","Action":"ec2:CreateSubnet","Resource":"arn:aws:ec2:r:1:subnet/*",
         "Condition":{"StringEquals":{"aws:RequestTag/podnet.io/cluster":"demo"}}},
        {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}"#;

    fn create_subnet(vpc: &str, tag: Option<&str>) -> Request {
        let r = Request::new(
            "ec2:CreateSubnet",
            vec![
                Resource::new(format!("arn:aws:ec2:r:1:vpc/{vpc}")),
                Resource::new("arn:aws:ec2:r:1:subnet/*"),
            ],
        );
        match tag {
            Some(t) => r.key("aws:RequestTag/podnet.io/cluster", t),
            None => r,
        }
    }

    #[test]
    fn every_resource_must_be_allowed_with_its_own_keys() {
        let p = policy(SUBNETS);
        assert_eq!(evaluate(&p, &create_subnet("vpc-1", Some("demo"))), Decision::Allow);
        assert_eq!(
            evaluate(&p, &create_subnet("vpc-1", None)),
            Decision::ImplicitDeny {
                resource: "arn:aws:ec2:r:1:subnet/*".into()
            }
        );
        assert_eq!(
            evaluate(&p, &create_subnet("vpc-2", Some("demo"))),
            Decision::ImplicitDeny {
                resource: "arn:aws:ec2:r:1:vpc/vpc-2".into()
            }
        );
        assert_eq!(evaluate(&p, &Request::new("ec2:DescribeVpcs", vec![])), Decision::Allow);
        assert!(matches!(
            evaluate(
                &p,
                &Request::new(
                    "eks:DescribeCluster",
                    vec![Resource::new("arn:aws:eks:r:1:cluster/demo")]
                )
            ),
            Decision::ImplicitDeny { .. }
        ));
    }

    #[test]
    fn an_explicit_deny_wins_and_not_action_inverts() {
        let p = policy(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
            {"Effect":"Deny","NotAction":["ec2:Describe*","eks:*"],"Resource":"*"}]}"#,
        );
        assert_eq!(
            evaluate(&p, &Request::new("ec2:DescribeSubnets", vec![])),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, &Request::new("ec2:DeleteSubnet", vec![Resource::new("arn:s")])),
            Decision::ExplicitDeny {
                resource: "arn:s".into()
            }
        );
    }

    #[test]
    fn missing_keys_negation_if_exists_null_and_sets() {
        let c = |doc: &str| {
            policy(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Action":"ec2:*","Resource":"*","Condition":{doc}}}]}}"#
            ))
        };
        let bare = Request::new("ec2:DeleteSubnet", vec![Resource::any()]);
        let tagged = Request::new(
            "ec2:DeleteSubnet",
            vec![Resource::any().key("aws:ResourceTag/team", "a")],
        );
        let allowed = |p: &Policy, r: &Request| evaluate(p, r) == Decision::Allow;
        let eq = c(r#"{"StringEquals":{"aws:ResourceTag/team":"a"}}"#);
        assert!(allowed(&eq, &tagged) && !allowed(&eq, &bare));
        let ne = c(r#"{"StringNotEquals":{"aws:ResourceTag/team":"a"}}"#);
        assert!(!allowed(&ne, &tagged) && allowed(&ne, &bare));
        let if_exists = c(r#"{"StringEqualsIfExists":{"aws:ResourceTag/team":"b"}}"#);
        assert!(allowed(&if_exists, &bare) && !allowed(&if_exists, &tagged));
        let null = c(r#"{"Null":{"aws:ResourceTag/team":"false"}}"#);
        assert!(allowed(&null, &tagged) && !allowed(&null, &bare));
        let keys = Request::new("ec2:CreateTags", vec![Resource::any()])
            .key("aws:TagKeys", "team")
            .key("aws:TagKeys", "cost");
        let all = c(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["team","cost","env"]}}"#);
        let any = c(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","cost"]}}"#);
        let only_team = c(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["team"]}}"#);
        assert!(allowed(&all, &keys) && allowed(&any, &keys) && !allowed(&only_team, &keys));
        assert!(allowed(&only_team, &bare), "ForAllValues holds with no values");
        // Keys are case-insensitive.
        let upper = c(r#"{"StringEquals":{"AWS:RESOURCETAG/TEAM":"a"}}"#);
        assert!(allowed(&upper, &tagged));
    }
}
