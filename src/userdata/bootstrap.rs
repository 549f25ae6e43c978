//! Amazon Linux 2's `/etc/eks/bootstrap.sh` call in a user data script:
//! max pods for custom networking is `--use-max-pods false
//! --kubelet-extra-args '--max-pods=N'` (EKS user guide, "Custom networking":
//! with a custom AMI, bootstrap's own max pods ignores the ENIConfig). The
//! call is tokenized as a shell would (quotes, backslash-newline
//! continuations) so only the two flags' values change, or the two flags
//! are appended to the call.

use std::ops::Range;

pub const BOOTSTRAP: &str = "/etc/eks/bootstrap.sh";

/// One shell word of the call and where it is in the script.
#[derive(Debug)]
struct Word {
    span: Range<usize>,
    /// Unquoted value.
    value: String,
}

/// The words of the logical line that starts at `from`, up to a shell
/// operator or comment. Errors on an unterminated quote.
fn words(script: &str, from: usize) -> Result<Vec<Word>, String> {
    let b = script.as_bytes();
    let mut i = from;
    let mut out = Vec::new();
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'\\' && (b[i + 1] == b'\n' || b[i + 1] == b'\r') {
            i += if b[i + 1] == b'\r' { 3 } else { 2 };
            continue;
        }
        if i >= b.len() || matches!(b[i], b'\n' | b'\r' | b';' | b'&' | b'|' | b'#') {
            return Ok(out);
        }
        let start = i;
        let mut value = String::new();
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b';' | b'&' | b'|') {
            match b[i] {
                q @ (b'\'' | b'"') => {
                    let close = script[i + 1..]
                        .find(q as char)
                        .ok_or_else(|| format!("an unterminated {} quote in {:?}", q as char, line_at(script, i)))?;
                    value.push_str(&script[i + 1..i + 1 + close]);
                    i += close + 2;
                }
                b'\\' if i + 1 < b.len() => {
                    value.push(b[i + 1] as char);
                    i += 2;
                }
                _ => {
                    let ch = script[i..].chars().next().unwrap_or(' ');
                    value.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        out.push(Word { span: start..i, value });
    }
}

fn line_at(s: &str, at: usize) -> &str {
    let start = s[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    s[start..].lines().next().unwrap_or("")
}

/// Where the bootstrap call's words start: the bootstrap.sh word itself.
fn call(script: &str) -> Result<Vec<Word>, String> {
    let mut at = 0;
    for line in script.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('#')
            && let Some(i) = line.find(BOOTSTRAP)
        {
            let ws = words(script, at + i)?;
            if ws.first().is_some_and(|w| w.value == BOOTSTRAP) {
                return Ok(ws);
            }
        }
        at += line.len();
    }
    Err(format!("no {BOOTSTRAP} call"))
}

/// `--flag value` or `--flag=value`: the value's word index (or, for the
/// `=` form, the flag's own) and its value.
fn flag<'a>(ws: &'a [Word], name: &str) -> Option<(usize, bool, &'a str)> {
    let eq = format!("{name}=");
    ws.iter().enumerate().find_map(|(i, w)| {
        if w.value == name {
            ws.get(i + 1).map(|v| (i + 1, false, v.value.as_str()))
        } else {
            w.value.strip_prefix(&eq).map(|v| (i, true, v))
        }
    })
}

/// `--max-pods=N` or `--max-pods N` inside kubelet's extra args.
fn max_pods_in(extra: &str) -> Option<(Range<usize>, u32)> {
    let i = extra.find("--max-pods")?;
    let after = &extra[i + "--max-pods".len()..];
    let skip = after.len() - after.trim_start_matches(['=', ' ']).len();
    let digits: String = after[skip..].chars().take_while(char::is_ascii_digit).collect();
    let n = digits.parse().ok()?;
    let start = i + "--max-pods".len() + skip;
    Some((start..start + digits.len(), n))
}

/// Max pods the call sets today (`None`: bootstrap computes it).
pub fn read(script: &str) -> Result<Option<u32>, String> {
    let ws = call(script)?;
    Ok(flag(&ws, "--kubelet-extra-args").and_then(|(_, _, v)| max_pods_in(v).map(|(_, n)| n)))
}

/// Sets max pods to `n` on the bootstrap call.
pub fn set(script: &str, n: u32) -> Result<String, String> {
    let ws = call(script)?;
    // Edits as (span in the script, replacement), applied back to front.
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut append = String::new();
    match flag(&ws, "--use-max-pods") {
        Some((i, eq, v)) if v != "false" => {
            let w = &ws[i];
            let text = if eq { "--use-max-pods=false" } else { "false" };
            edits.push((w.span.clone(), text.to_string()));
        }
        Some(_) => {}
        None => append.push_str(" --use-max-pods false"),
    }
    match flag(&ws, "--kubelet-extra-args") {
        Some((i, eq, v)) => {
            let extra = match max_pods_in(v) {
                Some((r, _)) => format!("{}{n}{}", &v[..r.start], &v[r.end..]),
                None if v.trim().is_empty() => format!("--max-pods={n}"),
                None => format!("{v} --max-pods={n}"),
            };
            let quoted = format!("'{}'", extra.replace('\'', r"'\''"));
            let text = if eq {
                format!("--kubelet-extra-args={quoted}")
            } else {
                quoted
            };
            edits.push((ws[i].span.clone(), text));
        }
        None => append.push_str(&format!(" --kubelet-extra-args '--max-pods={n}'")),
    }
    if !append.is_empty() {
        let end = ws.last().map(|w| w.span.end).unwrap_or(0);
        edits.push((end..end, append));
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = script.to_string();
    for (r, text) in edits {
        out.replace_range(r, &text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_appended_to_a_bare_call() {
        let s = "#!/bin/bash\nset -ex\n/etc/eks/bootstrap.sh podnet-demo --b64-cluster-ca abc && echo done\n";
        let out = set(s, 20).unwrap();
        assert_eq!(
            out,
            "#!/bin/bash\nset -ex\n/etc/eks/bootstrap.sh podnet-demo --b64-cluster-ca abc --use-max-pods false --kubelet-extra-args '--max-pods=20' && echo done\n"
        );
        assert_eq!(read(s).unwrap(), None);
        assert_eq!(read(&out).unwrap(), Some(20));
    }

    #[test]
    fn existing_values_are_changed_in_place_across_continuations() {
        let s = "#!/bin/bash\n/etc/eks/bootstrap.sh podnet-demo \\\n  --use-max-pods true \\\n  --kubelet-extra-args \"--node-labels=a=b --max-pods=35\" \\\n  --apiserver-endpoint https://x\n";
        let out = set(s, 24).unwrap();
        assert_eq!(
            out,
            "#!/bin/bash\n/etc/eks/bootstrap.sh podnet-demo \\\n  --use-max-pods false \\\n  --kubelet-extra-args '--node-labels=a=b --max-pods=24' \\\n  --apiserver-endpoint https://x\n"
        );
        assert_eq!(read(s).unwrap(), Some(35));
    }

    #[test]
    fn extra_args_without_max_pods_keep_theirs() {
        let s = "/etc/eks/bootstrap.sh c --kubelet-extra-args='--node-labels=x=y' --use-max-pods false\n";
        let out = set(s, 12).unwrap();
        assert_eq!(
            out,
            "/etc/eks/bootstrap.sh c --kubelet-extra-args='--node-labels=x=y --max-pods=12' --use-max-pods false\n"
        );
    }

    #[test]
    fn a_script_without_the_call_is_refused() {
        assert!(
            set("#!/bin/bash\n# /etc/eks/bootstrap.sh c\necho hi\n", 3)
                .unwrap_err()
                .contains("no /etc/eks/bootstrap.sh call")
        );
        assert!(
            set("/etc/eks/bootstrap.sh c --kubelet-extra-args '--x\n", 3)
                .unwrap_err()
                .contains("unterminated")
        );
    }
}
