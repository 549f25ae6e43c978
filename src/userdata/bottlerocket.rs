//! Bottlerocket's user data (TOML settings): max pods is
//! `settings.kubernetes.max-pods` (<https://bottlerocket.dev/en/os/latest/api/settings/kubernetes/>).
//! Edited on the lines of the `[settings.kubernetes]` table so comments and
//! every other setting stay as written, then parsed again with the `toml`
//! crate to prove the value is where Bottlerocket reads it.

const TABLE: &str = "[settings.kubernetes]";
const KEY: &str = "max-pods";

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// `settings.kubernetes.max-pods` as the document has it.
pub fn read(text: &str) -> Result<Option<u32>, String> {
    let v: toml::Table = text
        .parse()
        .map_err(|e| format!("the Bottlerocket settings are not TOML: {e}"))?;
    Ok(v.get("settings")
        .and_then(|s| s.get("kubernetes"))
        .and_then(|k| k.get(KEY))
        .and_then(toml::Value::as_integer)
        .and_then(|n| u32::try_from(n).ok()))
}

/// Sets `settings.kubernetes.max-pods` to `n`.
pub fn set(text: &str, n: u32) -> Result<String, String> {
    read(text)?;
    let mut at = 0;
    let mut in_table = false;
    let mut table_end: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if is_header(bare) {
            if in_table {
                break;
            }
            in_table = bare.split('#').next().unwrap_or("").trim() == TABLE;
            if in_table {
                table_end = Some(at + line.len());
            }
        } else if in_table {
            let key = bare.split_once('=').map(|(k, _)| k.trim().trim_matches('"'));
            if key == Some(KEY) {
                let (k, _) = bare.split_once('=').unwrap_or_default();
                let start = at + k.len() + 1;
                let value_end = at + bare.len();
                let comment = bare[k.len() + 1..].find('#').map(|c| &bare[k.len() + 1 + c..]);
                let tail = comment.map(|c| format!(" {c}")).unwrap_or_default();
                let out = format!("{} {n}{tail}{}", &text[..start], &text[value_end..]);
                return checked(out, n);
            }
            if !bare.trim().is_empty() {
                table_end = Some(at + line.len());
            }
        }
        at += line.len();
    }
    let Some(end) = table_end else {
        return Err(format!(
            "no {TABLE} table (a node's settings.kubernetes must say which cluster it joins)"
        ));
    };
    let eol = if text[..end].ends_with("\r\n") { "\r\n" } else { "\n" };
    let sep = if text[..end].ends_with('\n') { "" } else { eol };
    checked(format!("{}{sep}{KEY} = {n}{eol}{}", &text[..end], &text[end..]), n)
}

fn checked(out: String, n: u32) -> Result<String, String> {
    match read(&out)? {
        Some(m) if m == n => Ok(out),
        other => Err(format!("podnet's edit left settings.kubernetes.max-pods at {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[settings.kubernetes]\ncluster-name = \"podnet-demo\"\napi-server = \"https://x\"\nmax-pods = 29 # as the AMI computed\n\n[settings.kubernetes.node-labels]\nteam = \"a\"\n";

    #[test]
    fn an_existing_value_is_replaced_and_nothing_else() {
        let out = set(DOC, 20).unwrap();
        assert_eq!(out, DOC.replace("max-pods = 29 #", "max-pods = 20 #"));
        assert_eq!(read(DOC).unwrap(), Some(29));
    }

    #[test]
    fn a_missing_value_is_added_to_the_table() {
        let doc = DOC.replace("max-pods = 29 # as the AMI computed\n", "");
        let out = set(&doc, 20).unwrap();
        assert_eq!(
            out,
            "[settings.kubernetes]\ncluster-name = \"podnet-demo\"\napi-server = \"https://x\"\nmax-pods = 20\n\n[settings.kubernetes.node-labels]\nteam = \"a\"\n"
        );
    }

    #[test]
    fn settings_without_the_table_are_refused() {
        assert!(
            set("[settings.host-containers.admin]\nenabled = true\n", 3)
                .unwrap_err()
                .contains("no [settings.kubernetes]")
        );
        assert!(set("[settings.kubernetes\n", 3).unwrap_err().contains("not TOML"));
    }
}
