//! `[control_plane]`: the gate on the EKS control plane reaching the new
//! CIDR before pods move there (`steps::reach_gate`). The probe is one pod
//! serving HTTP; clusters that pull only from their own registry point
//! `probe_image` at a mirror of it.

use serde::{Deserialize, Serialize};

use super::Problem;

fn default_true() -> bool {
    true
}

fn default_image() -> String {
    "public.ecr.aws/docker/library/busybox:1.36".into()
}

fn default_namespace() -> String {
    "kube-system".into()
}

fn default_port() -> u16 {
    8080
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// Gate the cutover on the control plane's reach when webhooks or
    /// aggregated APIs will move to the new CIDR (default true).
    #[serde(default = "default_true")]
    pub gate: bool,
    /// An image with a shell and busybox's `httpd`.
    #[serde(default = "default_image")]
    pub probe_image: String,
    #[serde(default = "default_namespace")]
    pub probe_namespace: String,
    #[serde(default = "default_port")]
    pub probe_port: u16,
}

impl Default for ControlPlaneSection {
    fn default() -> Self {
        ControlPlaneSection {
            gate: true,
            probe_image: default_image(),
            probe_namespace: default_namespace(),
            probe_port: default_port(),
        }
    }
}

impl ControlPlaneSection {
    pub fn is_default(&self) -> bool {
        *self == ControlPlaneSection::default()
    }
}

/// A DNS-1123 label, as Kubernetes requires of a namespace name.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn validate(c: &ControlPlaneSection, p: &mut Vec<Problem>) {
    if c.probe_image.trim().is_empty() || c.probe_image.contains(char::is_whitespace) {
        p.push(Problem::new(
            "control_plane.probe_image",
            format!("{:?} is not an image reference", c.probe_image),
            "use an image with busybox's httpd, e.g. public.ecr.aws/docker/library/busybox:1.36",
        ));
    }
    if !is_dns_label(&c.probe_namespace) {
        p.push(Problem::new(
            "control_plane.probe_namespace",
            format!("{:?} is not a namespace name", c.probe_namespace),
            "use an existing namespace such as kube-system",
        ));
    }
    if c.probe_port == 0 {
        p.push(Problem::new(
            "control_plane.probe_port",
            "port 0 cannot be served",
            "use a port such as 8080",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_values_name_their_key() {
        let mut p = Vec::new();
        validate(&ControlPlaneSection::default(), &mut p);
        assert!(p.is_empty());
        let bad = ControlPlaneSection {
            probe_image: " ".into(),
            probe_namespace: "Kube_System".into(),
            probe_port: 0,
            ..Default::default()
        };
        validate(&bad, &mut p);
        let paths: Vec<&str> = p.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "control_plane.probe_image",
                "control_plane.probe_namespace",
                "control_plane.probe_port"
            ]
        );
    }
}
