//! Launch template user data, edited for custom networking: the max pods
//! setting in the form each AMI family reads — AL2023 nodeadm `NodeConfig`,
//! AL2 `bootstrap.sh` flags, Bottlerocket TOML settings — and nothing else.
//! Every other byte stays as it was, MIME multi-part framing included, so a
//! new launch template version differs from its source only in max pods.
//! User data podnet cannot interpret is refused with its lines, before any
//! change. Pure: no I/O (the caller decodes EC2's base64).

pub mod bootstrap;
pub mod bottlerocket;
pub mod mime;
pub mod nodeadm;

use serde::{Deserialize, Serialize};

/// How a node's AMI reads its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AmiFamily {
    /// Amazon Linux 2023: nodeadm `NodeConfig` in an `application/node.eks.aws` part.
    Al2023,
    /// Amazon Linux 2: a shell script calling `/etc/eks/bootstrap.sh`.
    Al2,
    /// Bottlerocket: TOML settings.
    Bottlerocket,
}

impl AmiFamily {
    /// From an EKS `amiType` (`AL2023_x86_64_STANDARD`, `AL2_x86_64`,
    /// `BOTTLEROCKET_ARM_64`, …); `None` for `CUSTOM` and unknown types.
    pub fn from_ami_type(t: &str) -> Option<AmiFamily> {
        if t.starts_with("AL2023_") {
            Some(AmiFamily::Al2023)
        } else if t.starts_with("AL2_") {
            Some(AmiFamily::Al2)
        } else if t.starts_with("BOTTLEROCKET_") {
            Some(AmiFamily::Bottlerocket)
        } else {
            None
        }
    }

    /// From the user data itself (a custom AMI's family is not in its type).
    pub fn detect(user_data: &str) -> Option<AmiFamily> {
        if let Ok(Some(parts)) = mime::parts(user_data) {
            if parts.iter().any(|p| p.content_type == NODEADM_TYPE) {
                return Some(AmiFamily::Al2023);
            }
            if parts
                .iter()
                .any(|p| user_data[p.body.clone()].contains(bootstrap::BOOTSTRAP))
            {
                return Some(AmiFamily::Al2);
            }
            return None;
        }
        if user_data.contains(bootstrap::BOOTSTRAP) {
            return Some(AmiFamily::Al2);
        }
        if user_data.contains("kind: NodeConfig") {
            return Some(AmiFamily::Al2023);
        }
        if user_data
            .lines()
            .any(|l| l.split('#').next().unwrap_or("").trim() == "[settings.kubernetes]")
        {
            return Some(AmiFamily::Bottlerocket);
        }
        None
    }
}

impl std::fmt::Display for AmiFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AmiFamily::Al2023 => "AL2023 (nodeadm)",
            AmiFamily::Al2 => "AL2 (bootstrap.sh)",
            AmiFamily::Bottlerocket => "Bottlerocket",
        })
    }
}

const NODEADM_TYPE: &str = "application/node.eks.aws";
const SCRIPT_TYPE: &str = "text/x-shellscript";

/// User data podnet will not change: why, and the lines it could not
/// interpret (at most a screenful).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct UserDataError {
    pub reason: String,
    pub lines: Vec<String>,
}

impl UserDataError {
    fn new(reason: impl Into<String>, text: &str) -> Self {
        UserDataError {
            reason: reason.into(),
            lines: text.lines().take(20).map(str::to_string).collect(),
        }
    }
}

/// The result of an edit: the new user data and max pods before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub user_data: String,
    pub before: Option<u32>,
}

/// Max pods as the user data sets it today (`None`: the AMI computes it).
pub fn read_max_pods(user_data: &str, family: AmiFamily) -> Result<Option<u32>, UserDataError> {
    Ok(set_max_pods(user_data, family, 0)?.before)
}

/// Sets max pods to `n` in the form `family` reads.
pub fn set_max_pods(user_data: &str, family: AmiFamily, n: u32) -> Result<Edited, UserDataError> {
    let fail = |e: String| UserDataError::new(e, user_data);
    let spans: Vec<std::ops::Range<usize>> = match mime::parts(user_data).map_err(fail)? {
        Some(parts) => {
            let want = match family {
                AmiFamily::Al2023 => NODEADM_TYPE,
                AmiFamily::Al2 => SCRIPT_TYPE,
                AmiFamily::Bottlerocket => {
                    return Err(fail("Bottlerocket user data is TOML, not MIME multi-part".into()));
                }
            };
            let mine: Vec<&mime::PartSpan> = parts.iter().filter(|p| p.content_type == want).collect();
            if let Some(p) = mine.iter().find(|p| {
                p.transfer_encoding
                    .as_deref()
                    .is_some_and(|e| e != "7bit" && e != "8bit")
            }) {
                return Err(fail(format!(
                    "a {want} part is {}-encoded; podnet edits only plain-text parts",
                    p.transfer_encoding.as_deref().unwrap_or("?")
                )));
            }
            mine.into_iter().map(|p| p.body.clone()).collect()
        }
        None => std::iter::once(0..user_data.len()).collect(),
    };
    let (range, before) = target(user_data, family, &spans)?;
    let body = &user_data[range.clone()];
    let edited = match family {
        AmiFamily::Al2023 => nodeadm::set(body, n),
        AmiFamily::Al2 => bootstrap::set(body, n),
        AmiFamily::Bottlerocket => bottlerocket::set(body, n),
    }
    .map_err(|e| UserDataError::new(e, body))?;
    // Read back as the AMI would: a line edit that missed is never written.
    let landed = match family {
        AmiFamily::Al2023 => nodeadm::read(&edited),
        AmiFamily::Al2 => bootstrap::read(&edited),
        AmiFamily::Bottlerocket => bottlerocket::read(&edited),
    }
    .map_err(|e| UserDataError::new(e, &edited))?;
    if landed != Some(n) {
        return Err(UserDataError::new(
            format!("podnet's edit would leave max pods at {landed:?}, not {n}"),
            body,
        ));
    }
    Ok(Edited {
        user_data: format!("{}{edited}{}", &user_data[..range.start], &user_data[range.end..]),
        before,
    })
}

/// The one span to edit and max pods before: for nodeadm, the last
/// NodeConfig that sets maxPods (nodeadm merges documents in order, the
/// last value wins), else the last NodeConfig; for a script, the one that
/// calls bootstrap.sh.
fn target(
    user_data: &str,
    family: AmiFamily,
    spans: &[std::ops::Range<usize>],
) -> Result<(std::ops::Range<usize>, Option<u32>), UserDataError> {
    let mut found: Vec<(std::ops::Range<usize>, Option<u32>)> = Vec::new();
    for s in spans {
        let text = &user_data[s.clone()];
        match family {
            AmiFamily::Al2023 => {
                for d in nodeadm::node_configs(text) {
                    let doc = &text[d.clone()];
                    let v = nodeadm::read(doc).map_err(|e| UserDataError::new(e, doc))?;
                    found.push((s.start + d.start..s.start + d.end, v));
                }
            }
            AmiFamily::Al2 => {
                if let Ok(v) = bootstrap::read(text) {
                    found.push((s.clone(), v));
                }
            }
            AmiFamily::Bottlerocket => {
                let v = bottlerocket::read(text).map_err(|e| UserDataError::new(e, text))?;
                found.push((s.clone(), v));
            }
        }
    }
    let pick = found.iter().rev().find(|(_, v)| v.is_some()).or(found.last()).cloned();
    pick.ok_or_else(|| {
        let what = match family {
            AmiFamily::Al2023 => "no nodeadm NodeConfig (an application/node.eks.aws part with kind: NodeConfig)",
            AmiFamily::Al2 => "no /etc/eks/bootstrap.sh call",
            AmiFamily::Bottlerocket => "no Bottlerocket settings",
        };
        UserDataError::new(format!("{family} user data with {what}"), user_data)
    })
}

#[cfg(test)]
mod tests;
