//! Planned changes: what a step's read-only observation says it would do, as
//! data that `plan` renders (`+ ~ -`, Terraform style) and `apply` records
//! with the approved plan.

use serde::{Deserialize, Serialize};

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    /// The symbol in front of the resource in human output.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::NoOp => "unchanged",
            Action::Create => "created",
            Action::Update => "updated in place",
            Action::Replace => "replaced",
            Action::Delete => "deleted",
        }
    }
}

/// An attribute's value after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    Known(serde_json::Value),
    /// Only AWS or Kubernetes can say (a new subnet's id).
    KnownAfterApply,
}

/// One attribute of a changed resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    /// `Some(null)` ("was unset") differs from `None` ("new resource"), and
    /// must survive a save and load: the saved plan's fingerprint covers it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub before: Option<serde_json::Value>,
    pub after: After,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// One resource a step touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub action: Action,
    /// `aws_vpc_cidr_association`, `kubernetes_eniconfig`, …
    pub resource_type: String,
    /// Human name: `100.64.0.0/16 on vpc-0abc`, `ap-northeast-2a`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// Why, when it isn't obvious (`already associated`, `drifted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Change {
    pub fn new(action: Action, resource_type: impl Into<String>, name: impl Into<String>) -> Self {
        Change {
            action,
            resource_type: resource_type.into(),
            name: name.into(),
            attributes: vec![],
            reason: None,
        }
    }

    pub fn attr(mut self, name: impl Into<String>, before: Option<serde_json::Value>, after: After) -> Self {
        self.attributes.push(Attribute {
            name: name.into(),
            before,
            after,
        });
        self
    }

    /// An attribute that will have a known value.
    pub fn set(self, name: impl Into<String>, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.attr(name, None, After::Known(v))
    }

    /// An attribute whose value changes from `before` to `after`.
    pub fn change(self, name: impl Into<String>, before: impl Serialize, after: impl Serialize) -> Self {
        let b = serde_json::to_value(before).unwrap_or(serde_json::Value::Null);
        let a = serde_json::to_value(after).unwrap_or(serde_json::Value::Null);
        self.attr(name, Some(b), After::Known(a))
    }

    pub fn unknown(self, name: impl Into<String>) -> Self {
        self.attr(name, None, After::KnownAfterApply)
    }

    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Everything one step would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPlan {
    pub step: String,
    pub description: String,
    pub changes: Vec<Change>,
    /// Things the user should know that are not changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StepPlan {
    pub fn new(step: impl Into<String>, description: impl Into<String>) -> Self {
        StepPlan {
            step: step.into(),
            description: description.into(),
            changes: vec![],
            notes: vec![],
        }
    }

    pub fn with(mut self, change: Change) -> Self {
        self.changes.push(change);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }

    /// Counts per action (create, update, replace, delete).
    pub fn counts(&self) -> ChangeCounts {
        let mut c = ChangeCounts::default();
        for ch in &self.changes {
            match ch.action {
                Action::NoOp => {}
                Action::Create => c.create += 1,
                Action::Update => c.update += 1,
                Action::Replace => c.replace += 1,
                Action::Delete => c.delete += 1,
            }
        }
        c
    }
}

/// Totals for a plan summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
}

impl ChangeCounts {
    pub fn add(&mut self, o: ChangeCounts) {
        self.create += o.create;
        self.update += o.update;
        self.replace += o.replace;
        self.delete += o.delete;
    }

    pub fn total(&self) -> usize {
        self.create + self.update + self.replace + self.delete
    }
}

impl std::fmt::Display for ChangeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to create, {} to update, {} to replace, {} to delete",
            self.create, self.update, self.replace, self.delete
        )
    }
}

/// Renders a value compactly for human output.
pub fn show_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Human rendering of one step's plan, Terraform style, without colour.
pub fn render_step_plan(plan: &StepPlan) -> Vec<String> {
    let mut out = Vec::new();
    for c in &plan.changes {
        let mut head = format!("  {} {} {}", c.action.symbol(), c.resource_type, c.name);
        if let Some(r) = &c.reason {
            head.push_str(&format!("  ({r})"));
        }
        out.push(head);
        if c.action == Action::NoOp {
            continue;
        }
        let width = c.attributes.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for a in &c.attributes {
            let after = match &a.after {
                After::Known(v) => show_value(v),
                After::KnownAfterApply => "(known after apply)".to_string(),
            };
            let line = match &a.before {
                Some(b) => format!("      {:width$} = {} -> {}", a.name, show_value(b), after),
                None => format!("      {:width$} = {}", a.name, after),
            };
            out.push(line);
        }
    }
    for n in &plan.notes {
        out.push(format!("  note: {}", n.replace('\n', "\n        ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        let p = StepPlan::new("associate-cidr", "associate 100.64.0.0/16")
            .with(
                Change::new(Action::Create, "aws_vpc_cidr_association", "100.64.0.0/16 on vpc-1")
                    .set("cidr_block", "100.64.0.0/16")
                    .unknown("association_id"),
            )
            .with(Change::new(Action::Update, "aws_eks_addon", "vpc-cni").change("env.X", "false", "true"))
            .with(Change::new(Action::NoOp, "aws_subnet", "100.64.1.0/24").because("exists"))
            .note("hello");
        let lines = render_step_plan(&p);
        assert_eq!(lines[0], "  + aws_vpc_cidr_association 100.64.0.0/16 on vpc-1");
        assert_eq!(lines[1], "      cidr_block     = \"100.64.0.0/16\"");
        assert_eq!(lines[2], "      association_id = (known after apply)");
        assert_eq!(lines[3], "  ~ aws_eks_addon vpc-cni");
        assert_eq!(lines[4], "      env.X = \"false\" -> \"true\"");
        assert_eq!(lines[5], "    aws_subnet 100.64.1.0/24  (exists)");
        assert_eq!(lines[6], "  note: hello");
        assert!(p.has_changes());
        assert_eq!(
            p.counts(),
            ChangeCounts {
                create: 1,
                update: 1,
                replace: 0,
                delete: 0
            }
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["changes"][0]["action"], "create");
        assert_eq!(json["changes"][0]["attributes"][1]["after"], "known_after_apply");
    }

    #[test]
    fn an_unset_before_value_survives_a_round_trip() {
        let c = Change::new(Action::Update, "t", "n").change("env.X", serde_json::Value::Null, "1");
        let back: Change = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let fresh = Change::new(Action::Create, "t", "n").set("a", 1);
        let back: Change = serde_json::from_str(&serde_json::to_string(&fresh).unwrap()).unwrap();
        assert_eq!(back, fresh);
    }
}
