//! What a node's kubelet takes for max pods from its launch template's user
//! data, read the way each AMI family reads it:
//! - AL2023: nodeadm merges the `NodeConfig` documents of the
//!   `application/node.eks.aws` parts in order, `spec.kubelet.config.maxPods`
//!   of the last one that sets it wins
//!   (<https://awslabs.github.io/amazon-eks-ami/nodeadm/>);
//! - AL2: `/etc/eks/bootstrap.sh … --kubelet-extra-args '--max-pods=N'`
//!   (the extra args come last on the kubelet's command line);
//! - Bottlerocket: `settings.kubernetes.max-pods` in its TOML settings
//!   (<https://bottlerocket.dev/en/os/latest/api/settings/kubernetes/>).
//!
//! `None` when the user data does not set it: the AMI then computes max pods
//! for the instance type without knowing about custom networking — what
//! EKS does not fix for a custom AMI (EKS user guide, "Customizing managed
//! nodes with launch templates": with an AMI specified, EKS does not merge
//! its bootstrap into the user data).

use serde_json::Value;

/// The bodies of a MIME multi-part's parts of `content_type`, or the whole
/// text when it is not multi-part.
fn bodies<'a>(text: &'a str, content_type: &str) -> Vec<&'a str> {
    let Some(boundary) = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with("content-type: multipart/"))
        .and_then(|l| l.split("boundary=").nth(1))
        .map(|b| b.trim().trim_matches('"').to_string())
    else {
        return vec![text];
    };
    let delimiter = format!("--{boundary}");
    text.split(delimiter.as_str())
        .skip(1)
        .filter_map(|part| {
            let part = part.trim_start_matches(['\r', '\n']);
            let split = part.find("\n\n").or_else(|| part.find("\r\n\r\n"))?;
            let (headers, body) = part.split_at(split);
            headers
                .lines()
                .any(|h| {
                    h.to_ascii_lowercase().starts_with("content-type:") && h.to_ascii_lowercase().contains(content_type)
                })
                .then_some(body)
        })
        .collect()
}

/// A `--max-pods` in `spec.kubelet.flags` goes on the kubelet's command
/// line, which wins over the config file nodeadm writes.
fn nodeadm(text: &str) -> Option<u32> {
    let mut config = None;
    let mut flag = None;
    for body in bodies(text, "application/node.eks.aws") {
        for doc in body.split("\n---") {
            let Ok(v) = serde_saphyr::from_str::<Value>(doc.trim_start_matches("---")) else {
                continue;
            };
            if v["kind"] != "NodeConfig" {
                continue;
            }
            if let Some(n) = v.pointer("/spec/kubelet/config/maxPods").and_then(Value::as_u64) {
                config = Some(n as u32);
            }
            let flags = v.pointer("/spec/kubelet/flags").and_then(Value::as_array);
            for f in flags.into_iter().flatten().filter_map(Value::as_str) {
                if let Some(n) = f.strip_prefix("--max-pods=").and_then(|n| n.parse().ok()) {
                    flag = Some(n);
                }
            }
        }
    }
    flag.or(config)
}

/// The command whose command word is bootstrap.sh (after `sudo`, `exec`,
/// `then`), on any line or after `;`, `&&`, `||`.
fn bootstrap(text: &str) -> Option<u32> {
    let call = text.replace("\\\n", " ");
    let line = call
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split([';', '&', '|']))
        .find(|cmd| {
            cmd.split_whitespace()
                .find(|w| !matches!(*w, "sudo" | "exec" | "then" | "do" | "env") && !w.contains('='))
                == Some("/etc/eks/bootstrap.sh")
        })?;
    let at = line.rfind("--max-pods")?;
    let digits: String = line[at + "--max-pods".len()..]
        .trim_start_matches(['=', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn bottlerocket(text: &str) -> Option<u32> {
    let v: toml::Table = text.parse().ok()?;
    v.get("settings")?
        .get("kubernetes")?
        .get("max-pods")?
        .as_integer()
        .and_then(|n| u32::try_from(n).ok())
}

/// Max pods the user data sets for the kubelet, for any of the three families.
pub fn max_pods(user_data: &str) -> Option<u32> {
    nodeadm(user_data)
        .or_else(|| bootstrap(user_data))
        .or_else(|| bottlerocket(user_data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_is_read_as_its_ami_reads_it() {
        let al2023 = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: application/node.eks.aws\n\n---\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 20\n\n--//\nContent-Type: application/node.eks.aws\n\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 17\n--//--\n";
        assert_eq!(max_pods(al2023), Some(17), "the last NodeConfig wins");
        let al2 = "#!/bin/bash\n/etc/eks/bootstrap.sh c \\\n  --use-max-pods false --kubelet-extra-args '--node-labels=a=b --max-pods=24'\n";
        assert_eq!(max_pods(al2), Some(24));
        assert_eq!(
            max_pods("[settings.kubernetes]\ncluster-name = \"c\"\nmax-pods = 29\n"),
            Some(29)
        );
        assert_eq!(max_pods("[settings.kubernetes]\ncluster-name = \"c\"\n"), None);
        assert_eq!(max_pods("#!/bin/bash\n/etc/eks/bootstrap.sh c\n"), None);
        let test_first = "if [ -f /etc/eks/bootstrap.sh ]; then sudo /etc/eks/bootstrap.sh c --kubelet-extra-args '--max-pods=9'; fi\n";
        assert_eq!(max_pods(test_first), Some(9));
        let flagged =
            "kind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 12\n    flags:\n      - --max-pods=30\n";
        assert_eq!(
            max_pods(&format!(
                "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: application/node.eks.aws\n\n{flagged}--B--\n"
            )),
            Some(30)
        );
    }
}
