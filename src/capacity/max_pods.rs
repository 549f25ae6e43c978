//! The max-pods formulas, with the semantics of amazon-eks-ami's
//! `max-pods-calculator.sh` (the recommended value EKS managed node groups and
//! the EKS AMIs use) and Karpenter's ENI-limited pod density.
//!
//! - secondary IPs: `ENIs × (IPv4 per ENI − 1) + 2`;
//! - prefix delegation (Nitro, VPC CNI ≥ 1.9): `ENIs × ((IPv4 per ENI − 1) × 16) + 2`;
//! - custom networking removes the primary ENI from `ENIs`;
//! - `--cni-max-eni` caps `ENIs` before that;
//! - the result is capped at 110, or 250 above 30 vCPUs, unless the uncapped
//!   ("max allowed") value is asked for.
//!
//! The `+ 2` is aws-node and kube-proxy, which use the host network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InstanceInfo;

const IPS_PER_PREFIX: u32 = 16;
const CAP_LOW_CPU: u32 = 110;
const CAP_HIGH_CPU: u32 = 250;
const HIGH_CPU_THRESHOLD: u32 = 30;

/// A VPC CNI version (`1.19.2`, `v1.19.2-eksbuild.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CniVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl CniVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        CniVersion { major, minor, patch }
    }

    /// The version `podnet max-pods` assumes when `--cni-version` is not given:
    /// the vpc-cni addon version of the reference scenario (EKS 1.31).
    pub const ASSUMED: CniVersion = CniVersion::new(1, 19, 2);

    /// Prefix delegation arrived in 1.9.0.
    pub fn supports_prefix_delegation(&self) -> bool {
        *self >= CniVersion::new(1, 9, 0)
    }

    /// Custom networking (ENIConfig) arrived in 1.2.1; podnet requires the
    /// zone-label selection (`ENI_CONFIG_LABEL_DEF`), present since 1.5.
    pub fn supports_custom_networking(&self) -> bool {
        *self >= CniVersion::new(1, 5, 0)
    }

    /// From 1.13, a node whose ENIConfig is missing keeps aws-node
    /// crash-looping, so the node never becomes Ready.
    pub fn missing_eniconfig_blocks_node(&self) -> bool {
        *self >= CniVersion::new(1, 13, 0)
    }

    /// Subnet discovery (`kubernetes.io/role/cni=1`) is on by default from 1.18.
    pub fn has_subnet_discovery(&self) -> bool {
        *self >= CniVersion::new(1, 18, 0)
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `X.Y[.Z]`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{0}` is not a VPC CNI version; expected X.Y.Z such as 1.19.2 (a leading `v` and an `-eksbuild.N` suffix are fine)"
)]
pub struct BadCniVersion(pub String);

impl FromStr for CniVersion {
    type Err = BadCniVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCniVersion(s.to_string());
        let core = s.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut next = |required: bool| -> Result<u32, BadCniVersion> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| bad()),
                None if required => Err(bad()),
                None => Ok(0),
            }
        };
        let v = CniVersion::new(next(true)?, next(true)?, next(false)?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl Serialize for CniVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CniVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the VPC CNI is (or will be) configured on the nodes in question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniSettings {
    pub custom_networking: bool,
    pub prefix_delegation: bool,
    pub version: CniVersion,
    /// `--cni-max-eni`: use at most this many ENIs for pods.
    pub max_eni: Option<u32>,
}

impl Default for CniSettings {
    fn default() -> Self {
        CniSettings {
            custom_networking: false,
            prefix_delegation: false,
            version: CniVersion::ASSUMED,
            max_eni: None,
        }
    }
}

/// One max-pods computation, with the intermediate values a user needs to
/// check it by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaxPods {
    pub instance_type: String,
    /// The value kubelet should get (capped unless `show_max_allowed`).
    pub max_pods: u32,
    /// The formula's value before the 110/250 cap.
    pub uncapped: u32,
    /// The cap that applies to this type (110, or 250 above 30 vCPUs).
    pub cap: u32,
    pub capped: bool,
    /// ENIs the CNI uses for pods after `--cni-max-eni` and custom networking.
    pub enis_for_pods: u32,
    pub ipv4_per_eni: u32,
    pub vcpus: u32,
    /// Whether the prefix-delegation formula was used (Nitro, CNI ≥ 1.9, asked for).
    pub prefix_delegation: bool,
}

/// Max pods for one instance type, exactly as `max-pods-calculator.sh`.
pub fn max_pods(info: &InstanceInfo, cni: &CniSettings, show_max_allowed: bool) -> MaxPods {
    let mut enis = info.default_card_max_enis;
    if let Some(limit) = cni.max_eni {
        enis = enis.min(limit);
    }
    if cni.custom_networking {
        enis = enis.saturating_sub(1);
    }
    let ips = info.ipv4_per_eni;
    let pd = info.is_nitro() && cni.prefix_delegation && cni.version.supports_prefix_delegation();
    let uncapped = if pd {
        enis * (ips.saturating_sub(1) * IPS_PER_PREFIX) + 2
    } else {
        enis * ips.saturating_sub(1) + 2
    };
    let cap = if info.vcpus > HIGH_CPU_THRESHOLD {
        CAP_HIGH_CPU
    } else {
        CAP_LOW_CPU
    };
    let max_pods = if show_max_allowed { uncapped } else { uncapped.min(cap) };
    MaxPods {
        instance_type: info.instance_type.clone(),
        max_pods,
        uncapped,
        cap,
        capped: !show_max_allowed && uncapped > cap,
        enis_for_pods: enis,
        ipv4_per_eni: ips,
        vcpus: info.vcpus,
        prefix_delegation: pd,
    }
}

/// Karpenter's ENI-limited pod density: `(ENIs − reservedENIs) × (IPs − 1) + 2`.
///
/// Karpenter does not know about custom networking; with it on, the controller
/// needs `RESERVED_ENIS=1` or it promises pods the node has no IPs for.
pub fn karpenter_max_pods(info: &InstanceInfo, reserved_enis: u32) -> u32 {
    info.default_card_max_enis.saturating_sub(reserved_enis) * info.ipv4_per_eni.saturating_sub(1) + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::InstanceTable;

    fn mp(t: &str, cn: bool, pd: bool, show: bool) -> u32 {
        let info = InstanceTable::embedded().lookup(t).unwrap();
        let cni = CniSettings {
            custom_networking: cn,
            prefix_delegation: pd,
            ..Default::default()
        };
        max_pods(info, &cni, show).max_pods
    }

    #[test]
    fn brief_table() {
        assert_eq!(mp("t3.medium", false, false, false), 17);
        assert_eq!(mp("t3.medium", true, false, false), 12);
        assert_eq!(mp("t3.large", false, false, false), 35);
        assert_eq!(mp("t3.large", true, false, false), 24);
        assert_eq!(mp("t4g.large", true, false, false), 24);
        assert_eq!(mp("m5.large", false, false, false), 29);
        assert_eq!(mp("m5.large", true, false, false), 20);
    }

    #[test]
    fn prefix_delegation_and_caps() {
        // 3 × (9 × 16) + 2 = 434, capped at 110 (2 vCPUs).
        assert_eq!(mp("m5.large", false, true, false), 110);
        assert_eq!(mp("m5.large", false, true, true), 434);
        // 2 × 144 + 2 = 290 uncapped with custom networking.
        assert_eq!(mp("m5.large", true, true, true), 290);
        assert_eq!(mp("m5.large", true, true, false), 110);
        // > 30 vCPUs: the cap is 250.
        let info = InstanceTable::embedded().lookup("m5.24xlarge").unwrap();
        let r = max_pods(info, &CniSettings::default(), false);
        assert_eq!(r.cap, 250);
        assert_eq!(r.uncapped, 15 * 49 + 2);
        assert_eq!(r.max_pods, 250);
        assert!(r.capped);
    }

    #[test]
    fn prefix_delegation_needs_nitro_and_cni_1_9() {
        let xen = InstanceTable::embedded()
            .iter()
            .find(|i| i.hypervisor == "xen")
            .unwrap();
        let pd = CniSettings {
            prefix_delegation: true,
            ..Default::default()
        };
        let plain = CniSettings::default();
        assert_eq!(max_pods(xen, &pd, true), max_pods(xen, &plain, true));
        let info = InstanceTable::embedded().lookup("m5.large").unwrap();
        let old = CniSettings {
            prefix_delegation: true,
            version: "1.8.0".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(max_pods(info, &old, true).uncapped, 29);
        assert!(!max_pods(info, &old, true).prefix_delegation);
    }

    #[test]
    fn multi_card_uses_the_default_card() {
        // c6in.32xlarge: 16 ENIs in all, 8 on the default card, 50 IPs each.
        let info = InstanceTable::embedded().lookup("c6in.32xlarge").unwrap();
        let r = max_pods(info, &CniSettings::default(), true);
        assert_eq!(r.enis_for_pods, 8);
        assert_eq!(r.uncapped, 8 * 49 + 2);
    }

    #[test]
    fn max_eni_limits_before_custom_networking() {
        let info = InstanceTable::embedded().lookup("m5.large").unwrap();
        let cni = CniSettings {
            custom_networking: true,
            max_eni: Some(2),
            ..Default::default()
        };
        assert_eq!(max_pods(info, &cni, false).max_pods, 9 + 2);
        let cni = CniSettings {
            max_eni: Some(10),
            ..Default::default()
        };
        assert_eq!(max_pods(info, &cni, false).max_pods, 29);
    }

    #[test]
    fn karpenter_view() {
        let t = InstanceTable::embedded();
        assert_eq!(karpenter_max_pods(t.lookup("t3.medium").unwrap(), 0), 17);
        assert_eq!(karpenter_max_pods(t.lookup("t3.medium").unwrap(), 1), 12);
        assert_eq!(karpenter_max_pods(t.lookup("t3.large").unwrap(), 1), 24);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            "v1.19.2-eksbuild.1".parse::<CniVersion>().unwrap(),
            CniVersion::new(1, 19, 2)
        );
        assert_eq!("1.9".parse::<CniVersion>().unwrap(), CniVersion::new(1, 9, 0));
        assert!("1".parse::<CniVersion>().is_err());
        assert!("one.two".parse::<CniVersion>().is_err());
        assert!("1.2.3.4".parse::<CniVersion>().is_err());
        assert!(CniVersion::new(1, 9, 0).supports_prefix_delegation());
        assert!(!CniVersion::new(1, 8, 9).supports_prefix_delegation());
        assert!(CniVersion::new(1, 13, 0).missing_eniconfig_blocks_node());
    }
}
