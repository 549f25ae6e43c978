//! MIME multi-part user data (RFC 2046 `multipart/mixed`, as EKS launch
//! templates carry it): where each part's body lies in the original text,
//! so an editor can change one body and keep every other byte — headers,
//! boundaries, line endings — as it was.

use std::ops::Range;

/// One part: its content type (lower case, without parameters) and where
/// its body is in the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpan {
    pub content_type: String,
    pub transfer_encoding: Option<String>,
    pub body: Range<usize>,
}

/// The header block at the start of `text` (up to the first empty line),
/// and the offset just after it. `None` when the text does not open with
/// headers.
fn header_block(text: &str) -> Option<(&str, usize)> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.is_empty() {
            return Some((&text[..at], at + line.len()));
        }
        // A header line is `Name: value` or a folded continuation.
        let continuation = bare.starts_with([' ', '\t']) && at > 0;
        let named = bare
            .split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !continuation && !named {
            return None;
        }
        at += line.len();
    }
    None
}

/// A header's value (case-insensitive name), folded lines joined.
fn header(block: &str, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut in_it = false;
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if in_it && let Some(v) = out.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        in_it = false;
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            out = Some(v.trim().to_string());
            in_it = true;
        }
    }
    out
}

/// `boundary=…` of a Content-Type value, quoted or not.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The parts of a multi-part text; `Ok(None)` when it is not multi-part.
pub fn parts(text: &str) -> Result<Option<Vec<PartSpan>>, String> {
    let Some((block, _)) = header_block(text) else {
        return Ok(None);
    };
    let Some(ct) = header(block, "Content-Type") else {
        return Ok(None);
    };
    if !media_type(&ct).starts_with("multipart/") {
        return Ok(None);
    }
    let b = boundary(&ct).ok_or_else(|| format!("Content-Type: {ct} names no boundary"))?;
    let open = format!("--{b}");
    // Offsets of each delimiter line and whether it closes.
    let mut delimiters: Vec<(usize, usize, bool)> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']).trim_end();
        if bare == open || bare == format!("{open}--") {
            delimiters.push((at, at + line.len(), bare.ends_with("--") && bare != open));
        }
        at += line.len();
    }
    if delimiters.is_empty() {
        return Err(format!("no part starts with the boundary line {open}"));
    }
    // Without the closing delimiter the last part's end is unknown (and a
    // part podnet skipped could be the one that wins).
    if !delimiters.last().is_some_and(|d| d.2) {
        return Err(format!("the multi-part has no closing {open}-- line"));
    }
    let mut out = Vec::new();
    for pair in delimiters.windows(2) {
        let ((_, start, closing), (next, _, _)) = (pair[0], pair[1]);
        if closing {
            break;
        }
        let part = &text[start..next];
        let (headers, body_at) = header_block(part)
            .ok_or_else(|| format!("a part after {open} has no header block: {:?}", first_line(part)))?;
        // The line break before the next delimiter belongs to the delimiter.
        let mut end = next;
        if text[..end].ends_with("\r\n") {
            end -= 2;
        } else if text[..end].ends_with('\n') {
            end -= 1;
        }
        out.push(PartSpan {
            content_type: header(headers, "Content-Type")
                .map(|c| media_type(&c))
                .unwrap_or_else(|| "text/plain".into()),
            transfer_encoding: header(headers, "Content-Transfer-Encoding").map(|e| e.to_ascii_lowercase()),
            body: (start + body_at).min(end)..end,
        });
    }
    Ok(Some(out))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"//\"\r\n\r\n--//\r\nContent-Type: application/node.eks.aws\r\n\r\n---\r\nkind: NodeConfig\r\n\r\n--//\r\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\r\n\r\n#!/bin/bash\r\necho hi\r\n--//--\r\n";

    #[test]
    fn finds_each_body_and_keeps_the_rest() {
        let p = parts(TWO).unwrap().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].content_type, "application/node.eks.aws");
        assert_eq!(&TWO[p[0].body.clone()], "---\r\nkind: NodeConfig\r\n");
        assert_eq!(p[1].content_type, "text/x-shellscript");
        assert_eq!(&TWO[p[1].body.clone()], "#!/bin/bash\r\necho hi");
    }

    #[test]
    fn a_multipart_without_its_closing_line_is_refused() {
        let open = TWO.replace("--//--\r\n", "");
        assert!(parts(&open).unwrap_err().contains("no closing --//--"));
    }

    #[test]
    fn plain_text_is_not_multipart() {
        assert_eq!(parts("#!/bin/bash\n/etc/eks/bootstrap.sh c\n").unwrap(), None);
        assert_eq!(parts("[settings.kubernetes]\nmax-pods = 1\n").unwrap(), None);
    }

    #[test]
    fn a_multipart_without_its_boundary_is_refused() {
        let e = parts("Content-Type: multipart/mixed; boundary=X\n\nno parts here\n").unwrap_err();
        assert!(e.contains("--X"), "{e}");
    }
}
