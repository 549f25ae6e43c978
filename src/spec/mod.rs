//! Migration plan files (`plans/*.toml`): reading them, reporting everything
//! wrong with one at once, and the validated [`Spec`] the rest of podnet
//! consumes. `model` is the file as written; `validate` is the static rules.

pub mod control_plane;
pub mod model;
mod pod_subnets;
mod sg_patch;
pub mod state;
pub mod validate;
mod validated;
pub mod waits;

use std::path::{Path, PathBuf};

pub use model::PlanFile;
pub use validate::{
    CNI_ROLE_TAG, ExplicitSubnet, KARPENTER_DISCOVERY_TAG, OWNER_TAG, Overrides, PodSubnetPlan, Problem, Protocol,
    ReplacementSpec, SecurityGroupRef, SgPatchSpec, Spec, validate,
};
pub use waits::{Waits, WaitsSection};

/// Why a plan file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not a `#[source]`: the message already says it, and `{:#}` would
    /// print it twice.
    #[error("cannot read plan file {}: {cause}{}", path.display(), read_hint(cause))]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("plan file {path} is invalid:\n{}", render(.problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

impl SpecError {
    /// Every problem, for structured output.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            SpecError::Read { path, cause } => vec![Problem::new(
                "",
                format!("cannot read {}: {cause}", path.display()),
                if cause.kind() == std::io::ErrorKind::NotFound {
                    "pass the plan with -f/--file, or write one from your cluster with `podnet init --cluster NAME --region REGION`"
                } else {
                    "check the path and its permissions"
                },
            )],
            SpecError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

fn read_hint(cause: &std::io::Error) -> &'static str {
    if cause.kind() == std::io::ErrorKind::NotFound {
        "\n  hint: pass the plan with -f/--file, or write one from your cluster with `podnet init --cluster NAME --region REGION`"
    } else {
        ""
    }
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads, parses and validates a plan file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|cause| SpecError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    parse(&text, overrides).map_err(|problems| SpecError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Parses and validates plan text; every problem found is returned.
pub fn parse(text: &str, overrides: &Overrides) -> Result<Spec, Vec<Problem>> {
    let (file, mut problems) = parse_file(text);
    let Some(file) = file else { return Err(problems) };
    // Keys set aside as unknown do not hide problems in the rest of the file.
    match validate(&file, overrides) {
        Ok(spec) if problems.is_empty() => Ok(spec),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// Parses the TOML into the file model. Unknown keys are all reported (not
/// just the first): each is recorded, removed, and the parse retried. Returns
/// the model when the rest of the file parsed, and the problems found.
pub fn parse_file(text: &str) -> (Option<PlanFile>, Vec<Problem>) {
    if text.trim().is_empty() {
        return (
            None,
            vec![Problem::new(
                "",
                "the plan file is empty",
                "start from plans/example.toml; at least [cluster] name and region are needed",
            )],
        );
    }
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return (
                None,
                vec![Problem::new(
                    "",
                    format!("not valid TOML: {}", e.to_string().trim_end()),
                    "fix the syntax at the line shown (plans/example.toml shows every key)",
                )],
            );
        }
    };
    let mut problems = Vec::new();
    // Each round removes one offending key; the bound only guards against a
    // key that cannot be removed.
    for _ in 0..64 {
        let de = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, PlanFile>(de) {
            Ok(file) => return (Some(file), problems),
            Err(err) => {
                let path = err.path().to_string();
                let path = if path == "." { String::new() } else { path };
                // toml appends "in `table`" on a second line; the path says it already.
                let inner = err.into_inner().to_string();
                let inner = inner.lines().next().unwrap_or_default().trim_end().to_string();
                let (message, fix, removable) = explain(&path, &inner);
                problems.push(Problem::new(path.clone(), message, fix));
                if !removable || !remove_path(&mut table, &path) {
                    return (None, problems);
                }
            }
        }
    }
    (None, problems)
}

/// Turns a serde message into a problem and a fix; says whether removing the
/// key at `path` lets parsing continue.
fn explain(path: &str, msg: &str) -> (String, String, bool) {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let expected = expected.trim_start_matches("one of ");
        let fix = if expected.is_empty() {
            "remove it".to_string()
        } else {
            format!("remove it or correct the spelling; this table accepts {expected}")
        };
        return (format!("unknown key {field}"), fix, true);
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let key = rest.trim_matches('`');
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        return (
            format!("missing required key {full}"),
            format!("add `{key} = ...` (see plans/example.toml)"),
            false,
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let (value, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        return (format!("{value} is not allowed here"), format!("use {expected}"), true);
    }
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        return (
            msg.to_string(),
            "write the value in the form shown in plans/example.toml".to_string(),
            true,
        );
    }
    if msg.starts_with("data did not match any variant") {
        return (
            "the value has the wrong shape".to_string(),
            "see plans/example.toml for the accepted forms of this key".to_string(),
            true,
        );
    }
    (msg.to_string(), "see plans/example.toml".to_string(), true)
}

/// Removes the value at a serde path (`a.b[2].c`) from the table.
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    let mut segs: Vec<Seg> = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => segs.push(Seg::Index(i)),
                Err(_) => return false,
            }
        }
    }
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = (|| {
        let mut cur = &mut root;
        for s in parents {
            cur = match (s, cur) {
                (Seg::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
                (Seg::Index(i), toml::Value::Array(a)) => a.get_mut(*i)?,
                _ => return None,
            };
        }
        match (last, cur) {
            (Seg::Key(k), toml::Value::Table(t)) => t.remove(k).map(|_| ()),
            (Seg::Index(i), toml::Value::Array(a)) if *i < a.len() => {
                a.remove(*i);
                Some(())
            }
            _ => None,
        }
    })()
    .is_some();
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed
}

enum Seg {
    Key(String),
    Index(usize),
}

#[cfg(test)]
mod tests;
