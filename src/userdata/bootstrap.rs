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

/// The words of one simple command starting at `from`, up to a shell
/// operator, a redirection or a comment, and where that stop is. Errors on
/// an unterminated quote.
fn words(script: &str, from: usize) -> Result<(Vec<Word>, usize), String> {
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
        let redirect = {
            let digits = b[i.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
            matches!(b.get(i + digits), Some(b'>' | b'<'))
        };
        if i >= b.len() || redirect || matches!(b[i], b'\n' | b'\r' | b';' | b'&' | b'|' | b'#') {
            return Ok((out, i));
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

/// Words that start a command before the command itself (`sudo`, `exec`,
/// `then`, `VAR=value`, …).
fn is_prefix(w: &Word) -> bool {
    matches!(
        w.value.as_str(),
        "sudo" | "exec" | "env" | "then" | "do" | "else" | "command" | "time" | "-E"
    ) || w.value.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && !k.starts_with('-') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn line_at(s: &str, at: usize) -> &str {
    let start = s[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    s[start..].lines().next().unwrap_or("")
}

/// The bootstrap call: the simple command whose command word is
/// bootstrap.sh (after `sudo`, `exec`, `then`, assignments …), from its
/// arguments' first word. Every command of every line is looked at, so
/// `[ -f /etc/eks/bootstrap.sh ]` or `B=/etc/eks/bootstrap.sh` is not taken
/// for the call.
fn call(script: &str) -> Result<Vec<Word>, String> {
    let b = script.as_bytes();
    let mut at = 0;
    while at < b.len() {
        let (ws, stop) = words(script, at)?;
        if let Some(i) = ws.iter().position(|w| !is_prefix(w))
            && ws[i].value == BOOTSTRAP
        {
            let call: Vec<Word> = ws.into_iter().skip(i).collect();
            if let Some(w) = call.iter().find(|w| {
                let raw = &script[w.span.clone()];
                raw.contains("$(") || raw.contains('`')
            }) {
                return Err(format!(
                    "the bootstrap call has a command substitution podnet will not edit around: {}",
                    &script[w.span.clone()]
                ));
            }
            return Ok(call);
        }
        // Past the operator, comment or redirection that ended the command.
        at = match b.get(stop) {
            Some(b'#') => script[stop..].find('\n').map(|n| stop + n + 1).unwrap_or(b.len()),
            Some(b'&' | b'|') => stop + b[stop..].iter().take_while(|c| matches!(c, b'&' | b'|')).count(),
            Some(b'\n' | b'\r' | b';') => stop + 1,
            // A redirection: past its operator and target.
            Some(_) => {
                let mut next = stop;
                while next < b.len() && !matches!(b[next], b' ' | b'\t' | b'\n' | b';') {
                    next += 1;
                }
                next.max(stop + 1)
            }
            None => b.len(),
        };
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

/// The edit of the `--kubelet-extra-args` value word, made on its raw text
/// so its quoting (and a variable a double quote expands) stays as written:
/// the digits of an existing `--max-pods` replaced, or ` --max-pods=N`
/// added before the closing quote.
fn extra_args_edit(script: &str, w: &Word, n: u32) -> Result<(Range<usize>, String), String> {
    let raw = &script[w.span.clone()];
    if let Some((r, _)) = max_pods_in(raw) {
        let at = w.span.start + r.start;
        return Ok((at..w.span.start + r.end, n.to_string()));
    }
    match raw.chars().last() {
        Some(q @ ('\'' | '"')) if raw.len() >= 2 => {
            let inner = raw[..raw.len() - 1].rsplit(q).next().unwrap_or("");
            let sep = if inner.trim().is_empty() { "" } else { " " };
            let end = w.span.end - 1;
            Ok((end..end, format!("{sep}--max-pods={n}")))
        }
        _ if raw.contains('$') || raw.contains('\\') => Err(format!(
            "--kubelet-extra-args {raw} is unquoted and expands: podnet will not guess its words"
        )),
        _ => {
            let value = raw.strip_prefix("--kubelet-extra-args=");
            let text = match value {
                Some(v) => format!("--kubelet-extra-args='{v} --max-pods={n}'"),
                None => format!("'{raw} --max-pods={n}'"),
            };
            Ok((w.span.clone(), text))
        }
    }
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
        Some((i, _, _)) => edits.push(extra_args_edit(script, &ws[i], n)?),
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
            "#!/bin/bash\n/etc/eks/bootstrap.sh podnet-demo \\\n  --use-max-pods false \\\n  --kubelet-extra-args \"--node-labels=a=b --max-pods=24\" \\\n  --apiserver-endpoint https://x\n"
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
    fn only_the_command_is_the_call_and_its_quoting_and_redirections_stay() {
        let s = "if [ -f /etc/eks/bootstrap.sh ]; then sudo /etc/eks/bootstrap.sh c --kubelet-extra-args \"--node-labels=id=$ID\" 2>&1 | tee /var/log/b; fi\n";
        let out = set(s, 9).unwrap();
        assert_eq!(
            out,
            "if [ -f /etc/eks/bootstrap.sh ]; then sudo /etc/eks/bootstrap.sh c --kubelet-extra-args \"--node-labels=id=$ID --max-pods=9\" --use-max-pods false 2>&1 | tee /var/log/b; fi\n"
        );
        assert_eq!(read(&out).unwrap(), Some(9));
        let e = set("B=/etc/eks/bootstrap.sh\n$B c\n", 9).unwrap_err();
        assert!(e.contains("no /etc/eks/bootstrap.sh call"), "{e}");
        let e = set("/etc/eks/bootstrap.sh c --dns-cluster-ip $(cat /ip)\n", 9).unwrap_err();
        assert!(e.contains("command substitution"), "{e}");
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
