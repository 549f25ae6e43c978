//! AL2023's nodeadm `NodeConfig` (YAML, `apiVersion: node.eks.aws/v1alpha1`):
//! max pods is `spec.kubelet.config.maxPods`
//! (<https://awslabs.github.io/amazon-eks-ami/nodeadm/doc/api/>). The edit is
//! made on the lines of the document, so comments, key order, quoting and
//! every other setting stay byte for byte; the result is parsed again to
//! prove the value landed where nodeadm reads it.

use serde_json::Value;

const PATH: [&str; 4] = ["spec", "kubelet", "config", "maxPods"];

/// One line: where it starts, its indentation and, for `key: rest` lines,
/// the key and what follows the colon.
struct Line<'a> {
    start: usize,
    text: &'a str,
    indent: usize,
    key: Option<(&'a str, &'a str)>,
}

fn lines(doc: &str) -> Vec<Line<'_>> {
    let mut at = 0;
    let mut out = Vec::new();
    for raw in doc.split_inclusive('\n') {
        let text = raw.trim_end_matches(['\r', '\n']);
        let indent = text.len() - text.trim_start_matches(' ').len();
        let body = text.trim_start_matches(' ');
        let key = if body.starts_with('#') || body.starts_with('-') {
            None
        } else {
            body.split_once(':')
                .filter(|(k, rest)| !k.is_empty() && !k.contains(' ') && (rest.is_empty() || rest.starts_with(' ')))
                .map(|(k, rest)| (k.trim_matches(['"', '\'']), rest))
        };
        out.push(Line {
            start: at,
            text,
            indent,
            key,
        });
        at += raw.len();
    }
    out
}

fn significant(l: &Line<'_>) -> bool {
    let t = l.text.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// What follows a key's colon, less a trailing comment.
fn inline_value(rest: &str) -> &str {
    let v = rest.trim();
    match v.find(" #") {
        Some(i) => v[..i].trim(),
        None => v,
    }
}

/// The NodeConfig documents in a part's text: byte ranges of each YAML
/// document (split on `---` lines) whose `kind` is NodeConfig.
pub fn node_configs(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for raw in text.split_inclusive('\n') {
        if raw.trim_end() == "---" {
            if at > start {
                docs.push(start..at);
            }
            start = at + raw.len();
        }
        at += raw.len();
    }
    if text.len() > start {
        docs.push(start..text.len());
    }
    docs.into_iter()
        .filter(|r| {
            lines(&text[r.clone()]).iter().any(|l| {
                l.indent == 0
                    && l.key
                        .is_some_and(|(k, v)| k == "kind" && inline_value(v) == "NodeConfig")
            })
        })
        .collect()
}

/// `spec.kubelet.config.maxPods` as the document has it.
pub fn read(doc: &str) -> Result<Option<u32>, String> {
    let v: Value = serde_saphyr::from_str(doc).map_err(|e| format!("the NodeConfig is not YAML: {e}"))?;
    Ok(v.pointer("/spec/kubelet/config/maxPods")
        .and_then(Value::as_u64)
        .map(|n| n as u32))
}

/// Sets `spec.kubelet.config.maxPods` to `n` in one NodeConfig document.
/// A `--max-pods` in `spec.kubelet.flags` is refused: nodeadm passes the
/// flags on the kubelet's command line, where they win over the config.
pub fn set(doc: &str, n: u32) -> Result<String, String> {
    let v: Value = serde_saphyr::from_str(doc).map_err(|e| format!("the NodeConfig is not YAML: {e}"))?;
    if let Some(f) = v
        .pointer("/spec/kubelet/flags")
        .and_then(Value::as_array)
        .and_then(|fs| {
            fs.iter()
                .filter_map(Value::as_str)
                .find(|f| f.starts_with("--max-pods"))
        })
    {
        return Err(format!(
            "spec.kubelet.flags has {f}, which the kubelet takes over kubelet.config.maxPods: remove it so podnet can set maxPods"
        ));
    }
    let ls = lines(doc);
    // The block of each key on the path: [from, to) line indexes.
    let (mut from, mut to) = (0, ls.len());
    let mut parent_indent: Option<usize> = None;
    let mut parent_line: Option<usize> = None;
    for (depth, key) in PATH.iter().enumerate() {
        let child_indent = ls[from..to]
            .iter()
            .find(|l| significant(l))
            .map(|l| l.indent)
            .filter(|i| parent_indent.is_none_or(|p| *i > p));
        let found = child_indent
            .and_then(|ci| (from..to).find(|&i| ls[i].indent == ci && ls[i].key.is_some_and(|(k, _)| k == *key)));
        let Some(i) = found else {
            return insert(doc, &ls, parent_line, parent_indent, child_indent, &PATH[depth..], n);
        };
        let (_, rest) = ls[i].key.unwrap_or_default();
        let value = inline_value(rest);
        if depth == PATH.len() - 1 {
            let l = &ls[i];
            let colon = l.text.find(':').unwrap_or(0);
            let value_at = l.start + colon + 1 + (rest.len() - rest.trim_start().len());
            let out = format!("{}{n}{}", &doc[..value_at], &doc[value_at + value.len()..]);
            return Ok(out);
        }
        if !value.is_empty() {
            return Err(format!(
                "podnet cannot edit {}: written inline ({:?}); write it as a block",
                PATH[..=depth].join("."),
                ls[i].text.trim()
            ));
        }
        let end = (i + 1..to)
            .find(|&j| significant(&ls[j]) && ls[j].indent <= ls[i].indent)
            .unwrap_or(to);
        (from, to, parent_indent, parent_line) = (i + 1, end, Some(ls[i].indent), Some(i));
    }
    Err("podnet found no place for spec.kubelet.config.maxPods".into())
}

/// Writes the missing `keys` (ending in maxPods) under the line
/// `parent`, indented as its children are (or two more than it).
fn insert(
    doc: &str,
    ls: &[Line<'_>],
    parent: Option<usize>,
    parent_indent: Option<usize>,
    child_indent: Option<usize>,
    keys: &[&str],
    n: u32,
) -> Result<String, String> {
    let Some(p) = parent else {
        return Err("the NodeConfig has no spec: podnet cannot tell where its settings go".into());
    };
    let base = child_indent.unwrap_or(parent_indent.unwrap_or(0) + 2);
    let step = if base > parent_indent.unwrap_or(0) {
        base - parent_indent.unwrap_or(0)
    } else {
        2
    };
    let crlf = doc[ls[p].start..]
        .find('\n')
        .is_some_and(|i| i > 0 && doc.as_bytes()[ls[p].start + i - 1] == b'\r');
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut add = String::new();
    for (k, key) in keys.iter().enumerate() {
        let pad = " ".repeat(base + k * step);
        if k + 1 == keys.len() {
            add.push_str(&format!("{pad}{key}: {n}{eol}"));
        } else {
            add.push_str(&format!("{pad}{key}:{eol}"));
        }
    }
    let after = ls[p].start
        + doc[ls[p].start..]
            .find('\n')
            .map(|i| i + 1)
            .unwrap_or(doc.len() - ls[p].start);
    let (head, tail) = doc.split_at(after);
    let sep = if head.ends_with('\n') { "" } else { eol };
    Ok(format!("{head}{sep}{add}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: podnet-demo # the cluster\n    cidr: 172.20.0.0/16\n  kubelet:\n    config:\n      maxPods: 35\n      shutdownGracePeriod: 30s\n    flags:\n      - --node-labels=team=a\n";

    #[test]
    fn an_existing_value_is_replaced_and_nothing_else() {
        let out = set(DOC, 20).unwrap();
        assert_eq!(out, DOC.replace("maxPods: 35", "maxPods: 20"));
        assert_eq!(read(&out).unwrap(), Some(20));
        assert_eq!(read(DOC).unwrap(), Some(35));
    }

    #[test]
    fn missing_levels_are_added_under_their_parent() {
        let doc = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n    cluster:\n        name: c\n";
        let out = set(doc, 12).unwrap();
        assert_eq!(
            out,
            "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n    kubelet:\n        config:\n            maxPods: 12\n    cluster:\n        name: c\n"
        );
        assert_eq!(read(&out).unwrap(), Some(12));
        let doc = DOC.replace("      maxPods: 35\n", "");
        let out = set(&doc, 12).unwrap();
        assert_eq!(read(&out).unwrap(), Some(12), "{out}");
        assert!(out.contains("      shutdownGracePeriod: 30s\n"), "{out}");
    }

    #[test]
    fn crlf_documents_keep_crlf() {
        let doc = "kind: NodeConfig\r\nspec:\r\n  kubelet:\r\n    flags: []\r\n";
        let out = set(doc, 9).unwrap();
        assert_eq!(
            out,
            "kind: NodeConfig\r\nspec:\r\n  kubelet:\r\n    config:\r\n      maxPods: 9\r\n    flags: []\r\n"
        );
    }

    #[test]
    fn a_max_pods_flag_is_refused() {
        let doc = "kind: NodeConfig\nspec:\n  kubelet:\n    flags:\n      - --max-pods=110\n";
        assert!(set(doc, 9).unwrap_err().contains("--max-pods=110"));
    }

    #[test]
    fn inline_maps_and_a_missing_spec_are_refused() {
        let e = set("kind: NodeConfig\nspec:\n  kubelet: {config: {maxPods: 3}}\n", 9).unwrap_err();
        assert!(e.contains("spec.kubelet") && e.contains("inline"), "{e}");
        assert!(set("kind: NodeConfig\n", 9).unwrap_err().contains("no spec"));
    }

    #[test]
    fn finds_node_configs_among_documents() {
        let text = "---\napiVersion: v1\nkind: Other\n---\nkind: NodeConfig\nspec: {}\n";
        let docs = node_configs(text);
        assert_eq!(docs.len(), 1);
        assert_eq!(&text[docs[0].clone()], "kind: NodeConfig\nspec: {}\n");
    }
}
