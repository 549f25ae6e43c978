//! `[waits]`: every bound podnet waits under, in one value. The defaults
//! fit EKS as documented (a VPC CIDR association takes seconds to minutes, an
//! add-on update and a DaemonSet rollout minutes, a managed node group
//! update up to an hour); a large or slow cluster raises them in the plan
//! file instead of resuming after each timeout. They are saved with the
//! approved plan, so `resume` waits as `apply` did.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problem;

/// `[waits]` as written: humantime durations (`"90s"`, `"10m"`, `"1h"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitsSection {
    pub poll: Option<String>,
    pub cidr_association: Option<String>,
    pub eniconfig_crd: Option<String>,
    pub karpenter_rollout: Option<String>,
    pub addon_update: Option<String>,
    pub aws_node_rollout: Option<String>,
    pub replacement_settle: Option<String>,
    pub node_group_update: Option<String>,
    pub verify: Option<String>,
    pub propagation: Option<String>,
    pub control_plane_reach: Option<String>,
}

/// Every wait bound, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waits {
    /// How often a wait looks again.
    #[serde(with = "text")]
    pub poll: Duration,
    /// A VPC CIDR association reaching `associated`.
    #[serde(with = "text")]
    pub cidr_association: Duration,
    /// The ENIConfig CRD reaching `Established`.
    #[serde(with = "text")]
    pub eniconfig_crd: Duration,
    /// The Karpenter controller's rollout after `RESERVED_ENIS` is set.
    #[serde(with = "text")]
    pub karpenter_rollout: Duration,
    /// An `UpdateAddon` reaching `Successful`.
    #[serde(with = "text")]
    pub addon_update: Duration,
    /// The aws-node DaemonSet's rollout after its configuration changed.
    #[serde(with = "text")]
    pub aws_node_rollout: Duration,
    /// Replacements Ready and holding the evicted pods, and old nodes gone
    /// (default: the drain timeout, at least 10 minutes).
    #[serde(with = "text")]
    pub replacement_settle: Duration,
    /// An `UpdateNodegroupVersion` reaching `Successful`.
    #[serde(with = "text")]
    pub node_group_update: Duration,
    /// The final checks passing (replacement pods may still be starting).
    #[serde(with = "text")]
    pub verify: Duration,
    /// A resource EC2 just created becoming visible to the next call (EC2 is
    /// eventually consistent: a new subnet may answer
    /// `InvalidSubnetID.NotFound` for a moment). Absent from plans saved
    /// before it existed: the default.
    /// Left out when it is the default, so a plan file approved before this
    /// bound existed keeps its fingerprint and its migration resumes.
    #[serde(
        with = "text",
        default = "default_propagation",
        skip_serializing_if = "is_default_propagation"
    )]
    pub propagation: Duration,
    /// The control plane reaching the new CIDR (EKS: up to five hours after
    /// the association). Left out at its default, as `propagation` is.
    #[serde(
        with = "text",
        default = "default_control_plane_reach",
        skip_serializing_if = "is_default_control_plane_reach"
    )]
    pub control_plane_reach: Duration,
}

fn default_control_plane_reach() -> Duration {
    Duration::from_secs(6 * 3600)
}

fn is_default_control_plane_reach(d: &Duration) -> bool {
    *d == default_control_plane_reach()
}

fn default_propagation() -> Duration {
    Duration::from_secs(120)
}

fn is_default_propagation(d: &Duration) -> bool {
    *d == default_propagation()
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            poll: Duration::from_secs(2),
            cidr_association: Duration::from_secs(300),
            eniconfig_crd: Duration::from_secs(120),
            karpenter_rollout: Duration::from_secs(600),
            addon_update: Duration::from_secs(1200),
            aws_node_rollout: Duration::from_secs(900),
            replacement_settle: Duration::from_secs(600),
            node_group_update: Duration::from_secs(3600),
            verify: Duration::from_secs(300),
            propagation: default_propagation(),
            control_plane_reach: default_control_plane_reach(),
        }
    }
}

/// Durations as the plan file writes them.
mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// One key: parsed, or a problem naming it; the default when unset.
fn bound(key: &str, value: &Option<String>, default: Duration, p: &mut Vec<Problem>) -> Duration {
    let Some(text) = value else { return default };
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => {
            p.push(Problem::new(
                format!("waits.{key}"),
                "a zero bound gives up before the first look",
                format!(
                    "remove it for the default ({}) or give a duration",
                    humantime::format_duration(default)
                ),
            ));
            default
        }
        Ok(d) => d,
        Err(e) => {
            p.push(Problem::new(
                format!("waits.{key}"),
                format!("`{text}` is not a duration ({e})"),
                "write it like \"90s\", \"10m\" or \"1h\"",
            ));
            default
        }
    }
}

/// The bounds the plan file sets, the defaults for the rest.
pub fn validate(w: &WaitsSection, drain_timeout: Duration, p: &mut Vec<Problem>) -> Waits {
    let d = Waits::default();
    let waits = Waits {
        poll: bound("poll", &w.poll, d.poll, p),
        cidr_association: bound("cidr_association", &w.cidr_association, d.cidr_association, p),
        eniconfig_crd: bound("eniconfig_crd", &w.eniconfig_crd, d.eniconfig_crd, p),
        karpenter_rollout: bound("karpenter_rollout", &w.karpenter_rollout, d.karpenter_rollout, p),
        addon_update: bound("addon_update", &w.addon_update, d.addon_update, p),
        aws_node_rollout: bound("aws_node_rollout", &w.aws_node_rollout, d.aws_node_rollout, p),
        replacement_settle: bound(
            "replacement_settle",
            &w.replacement_settle,
            drain_timeout.max(d.replacement_settle),
            p,
        ),
        node_group_update: bound("node_group_update", &w.node_group_update, d.node_group_update, p),
        verify: bound("verify", &w.verify, d.verify, p),
        propagation: bound("propagation", &w.propagation, d.propagation, p),
        control_plane_reach: bound("control_plane_reach", &w.control_plane_reach, d.control_plane_reach, p),
    };
    if waits.poll > Duration::from_secs(60) {
        p.push(Problem::new(
            "waits.poll",
            format!(
                "polling every {} would miss most of what podnet waits for",
                humantime::format_duration(waits.poll)
            ),
            "use a minute or less (the default is 2s)",
        ));
    }
    waits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_bounds_are_the_defaults_and_settle_follows_the_drain_timeout() {
        let mut p = Vec::new();
        let w = validate(&WaitsSection::default(), Duration::from_secs(1800), &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(w.replacement_settle, Duration::from_secs(1800));
        assert_eq!(w.node_group_update, Duration::from_secs(3600));
        let w = validate(&WaitsSection::default(), Duration::from_secs(90), &mut p);
        assert_eq!(w.replacement_settle, Duration::from_secs(600));
    }

    #[test]
    fn each_bad_bound_is_named_with_its_fix() {
        let mut p = Vec::new();
        let section = WaitsSection {
            addon_update: Some("40m".into()),
            node_group_update: Some("soon".into()),
            verify: Some("0s".into()),
            poll: Some("5m".into()),
            ..Default::default()
        };
        let w = validate(&section, Duration::from_secs(600), &mut p);
        assert_eq!(w.addon_update, Duration::from_secs(2400));
        let paths: Vec<&str> = p.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["waits.node_group_update", "waits.verify", "waits.poll"]);
        assert!(p[0].message.contains("`soon` is not a duration"), "{}", p[0].message);
        assert!(p[1].fix.contains("default (5m)"), "{}", p[1].fix);
    }

    #[test]
    fn saved_as_the_plan_file_writes_them() {
        let w = Waits::default();
        let json = serde_json::to_value(w).unwrap();
        assert_eq!(json["node_group_update"], "1h");
        assert_eq!(serde_json::from_value::<Waits>(json).unwrap(), w);
    }
}
