//! Whether AWS will associate a secondary IPv4 CIDR block with a VPC: the
//! association restrictions relative to the primary CIDR's range (Amazon VPC
//! User Guide, "IPv4 CIDR block association restrictions"), block size,
//! overlap, the route-table rule and the per-VPC quota. moto checks none of
//! these, so podnet must refuse them itself before touching anything.

use ipnet::Ipv4Net;
use serde::Serialize;

use super::overlaps;

/// The ranges the association table distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressRange {
    /// 10.0.0.0/8 (RFC 1918)
    Ten,
    /// 172.16.0.0/12 (RFC 1918)
    OneSevenTwo,
    /// 192.168.0.0/16 (RFC 1918)
    OneNineTwo,
    /// 198.19.0.0/16 (benchmarking range that AWS treats specially)
    OneNinetyEightNineteen,
    /// Publicly routable space, or 100.64.0.0/10 (RFC 6598 shared space)
    PublicOrCgnat,
}

fn net(s: &str) -> Ipv4Net {
    // Literals below are constants; a typo is caught by the unit tests.
    s.parse().expect("constant CIDR")
}

impl AddressRange {
    pub fn of(block: &Ipv4Net) -> AddressRange {
        if net("10.0.0.0/8").contains(block) {
            AddressRange::Ten
        } else if net("172.16.0.0/12").contains(block) {
            AddressRange::OneSevenTwo
        } else if net("192.168.0.0/16").contains(block) {
            AddressRange::OneNineTwo
        } else if net("198.19.0.0/16").contains(block) {
            AddressRange::OneNinetyEightNineteen
        } else {
            AddressRange::PublicOrCgnat
        }
    }

    pub fn is_rfc1918(self) -> bool {
        matches!(
            self,
            AddressRange::Ten | AddressRange::OneSevenTwo | AddressRange::OneNineTwo
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            AddressRange::Ten => "10.0.0.0/8",
            AddressRange::OneSevenTwo => "172.16.0.0/12",
            AddressRange::OneNineTwo => "192.168.0.0/16",
            AddressRange::OneNinetyEightNineteen => "198.19.0.0/16",
            AddressRange::PublicOrCgnat => "public or 100.64.0.0/10",
        }
    }
}

/// The IPv4 CIDR blocks a VPC has now.
#[derive(Debug, Clone, Serialize)]
pub struct VpcCidrs {
    pub primary: Ipv4Net,
    /// Every associated (or associating) IPv4 block, the primary included.
    pub associated: Vec<Ipv4Net>,
}

/// A route destination in one of the VPC's route tables.
#[derive(Debug, Clone, Serialize)]
pub struct RouteDestination {
    pub route_table_id: String,
    pub destination: Ipv4Net,
    /// `local`, `igw-…`, `tgw-…`, …
    pub target: String,
}

/// One reason AWS would refuse the association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CidrProblem {
    #[error("{block} is a /{prefix}; AWS associates only /16 to /28 blocks")]
    BlockSize { block: Ipv4Net, prefix: u8 },
    #[error(
        "{block} is in {candidate_range}, which AWS refuses next to a primary CIDR in {primary_range} ({primary}); {hint}"
    )]
    Restricted {
        block: Ipv4Net,
        primary: Ipv4Net,
        primary_range: String,
        candidate_range: String,
        hint: String,
    },
    #[error(
        "{block} overlaps {existing}, already associated with the VPC; choose a block that overlaps none of its CIDRs"
    )]
    Overlap { block: Ipv4Net, existing: Ipv4Net },
    #[error(
        "{block} equals or contains the destination {destination} of a route in {route_table_id} (to {target}); AWS refuses a block the same as or larger than a route destination — use a smaller block or one elsewhere"
    )]
    RouteConflict {
        block: Ipv4Net,
        destination: Ipv4Net,
        route_table_id: String,
        target: String,
    },
    #[error(
        "the VPC already has {count} IPv4 CIDR blocks and the quota is {quota}; raise the `IPv4 CIDR blocks per VPC` quota in Service Quotas or remove an unused block"
    )]
    Quota { count: usize, quota: usize },
}

/// What the checks found.
#[derive(Debug, Clone, Serialize)]
pub struct CidrVerdict {
    /// The exact block is already associated: nothing to do, nothing to check.
    pub already_associated: bool,
    pub problems: Vec<CidrProblem>,
}

impl CidrVerdict {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every rule and reports every violation, not only the first.
pub fn check_secondary_cidr(block: Ipv4Net, vpc: &VpcCidrs, routes: &[RouteDestination], quota: usize) -> CidrVerdict {
    if vpc.associated.contains(&block) || vpc.primary == block {
        return CidrVerdict {
            already_associated: true,
            problems: vec![],
        };
    }
    let mut problems = Vec::new();
    let prefix = block.prefix_len();
    if !(16..=28).contains(&prefix) {
        problems.push(CidrProblem::BlockSize { block, prefix });
    }
    if let Some(p) = restriction(block, vpc) {
        problems.push(p);
    }
    let mut existing: Vec<Ipv4Net> = vpc.associated.clone();
    if !existing.contains(&vpc.primary) {
        existing.push(vpc.primary);
    }
    for e in &existing {
        if overlaps(e, &block) {
            problems.push(CidrProblem::Overlap { block, existing: *e });
        }
    }
    for r in routes {
        // `local` routes are the VPC's own CIDRs: overlap already covers them.
        if r.target == "local" {
            continue;
        }
        if block.contains(&r.destination) {
            problems.push(CidrProblem::RouteConflict {
                block,
                destination: r.destination,
                route_table_id: r.route_table_id.clone(),
                target: r.target.clone(),
            });
        }
    }
    if existing.len() >= quota {
        problems.push(CidrProblem::Quota {
            count: existing.len(),
            quota,
        });
    }
    CidrVerdict {
        already_associated: false,
        problems,
    }
}

fn restriction(block: Ipv4Net, vpc: &VpcCidrs) -> Option<CidrProblem> {
    use AddressRange::*;
    let primary_range = AddressRange::of(&vpc.primary);
    let candidate = AddressRange::of(&block);
    let refuse = |hint: &str| {
        Some(CidrProblem::Restricted {
            block,
            primary: vpc.primary,
            primary_range: primary_range.label().to_string(),
            candidate_range: candidate.label().to_string(),
            hint: hint.to_string(),
        })
    };
    const USE_CGNAT: &str = "use a block from 100.64.0.0/10 such as 100.64.0.0/16";
    match primary_range {
        Ten | OneSevenTwo | OneNineTwo => {
            if candidate.is_rfc1918() && candidate != primary_range {
                return refuse(&format!(
                    "a secondary block may come from the primary's own RFC 1918 range only; {USE_CGNAT}"
                ));
            }
            if candidate == OneNinetyEightNineteen {
                return refuse(&format!(
                    "198.19.0.0/16 is not allowed next to an RFC 1918 primary; {USE_CGNAT}"
                ));
            }
            if primary_range == Ten
                && net("10.0.0.0/16").contains(&block)
                && vpc
                    .associated
                    .iter()
                    .chain([&vpc.primary])
                    .any(|c| net("10.0.0.0/15").contains(c))
            {
                return refuse(&format!(
                    "when a VPC block is in 10.0.0.0/15, AWS refuses blocks from 10.0.0.0/16; {USE_CGNAT}"
                ));
            }
            if primary_range == OneSevenTwo && net("172.31.0.0/16").contains(&block) {
                return refuse(&format!(
                    "172.31.0.0/16 is refused next to a 172.16.0.0/12 primary; {USE_CGNAT}"
                ));
            }
            None
        }
        OneNinetyEightNineteen => {
            if candidate.is_rfc1918() {
                return refuse(&format!(
                    "RFC 1918 blocks are refused next to a 198.19.0.0/16 primary; {USE_CGNAT}"
                ));
            }
            None
        }
        PublicOrCgnat => {
            if candidate.is_rfc1918() || candidate == OneNinetyEightNineteen {
                return refuse(&format!(
                    "RFC 1918 and 198.19.0.0/16 blocks are refused next to a public or 100.64.0.0/10 primary; {USE_CGNAT}"
                ));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc(primary: &str, others: &[&str]) -> VpcCidrs {
        let p = net(primary);
        let mut associated = vec![p];
        associated.extend(others.iter().map(|o| net(o)));
        VpcCidrs { primary: p, associated }
    }

    fn check(primary: &str, others: &[&str], block: &str) -> Vec<CidrProblem> {
        check_secondary_cidr(net(block), &vpc(primary, others), &[], 5).problems
    }

    fn restricted(primary: &str, block: &str) -> bool {
        check(primary, &[], block)
            .iter()
            .any(|p| matches!(p, CidrProblem::Restricted { .. }))
    }

    #[test]
    fn association_table() {
        // (primary, candidate, refused?)
        let cases = [
            ("10.255.0.0/16", "100.64.0.0/16", false),
            ("10.255.0.0/16", "100.127.0.0/16", false),
            ("10.255.0.0/16", "198.19.0.0/16", true),
            ("10.255.0.0/16", "172.20.0.0/16", true),
            ("10.255.0.0/16", "192.168.0.0/16", true),
            ("10.255.0.0/16", "10.1.0.0/16", false),
            ("10.255.0.0/16", "52.10.0.0/16", false),
            ("10.0.0.0/16", "10.0.0.0/24", true), // 10.0.0.0/15 rule (also an overlap)
            ("10.1.0.0/16", "10.0.0.0/16", true), // 10.1/16 is inside 10.0.0.0/15
            ("172.20.0.0/16", "100.64.0.0/16", false),
            ("172.20.0.0/16", "172.31.0.0/16", true),
            ("172.20.0.0/16", "172.21.0.0/16", false),
            ("172.20.0.0/16", "10.0.0.0/16", true),
            ("172.20.0.0/16", "198.19.0.0/16", true),
            ("192.168.0.0/20", "192.168.16.0/20", false),
            ("192.168.0.0/20", "100.64.0.0/16", false),
            ("192.168.0.0/20", "198.19.0.0/16", true),
            ("192.168.0.0/20", "10.0.0.0/16", true),
            ("198.19.0.0/16", "10.0.0.0/16", true),
            ("198.19.0.0/16", "100.64.0.0/16", false),
            ("100.64.0.0/16", "10.0.0.0/16", true),
            ("100.64.0.0/16", "198.19.0.0/16", true),
            ("100.64.0.0/16", "100.65.0.0/16", false),
            ("52.0.0.0/16", "100.64.0.0/16", false),
        ];
        for (primary, block, refused) in cases {
            assert_eq!(restricted(primary, block), refused, "{block} next to {primary}");
        }
    }

    #[test]
    fn the_brief_examples() {
        assert!(check("10.255.0.0/16", &[], "100.64.0.0/16").is_empty());
        let p = check("10.255.0.0/16", &[], "198.19.0.0/16");
        assert_eq!(p.len(), 1);
        assert!(p[0].to_string().contains("100.64.0.0/16"), "{}", p[0]);
    }

    #[test]
    fn size_overlap_quota() {
        assert!(matches!(
            check("10.255.0.0/16", &[], "100.64.0.0/15")[0],
            CidrProblem::BlockSize { prefix: 15, .. }
        ));
        assert!(matches!(
            check("10.255.0.0/16", &[], "100.64.0.0/29")[0],
            CidrProblem::BlockSize { .. }
        ));
        assert!(check("10.255.0.0/16", &[], "100.64.0.0/28").is_empty());
        let p = check("10.255.0.0/16", &["100.64.0.0/17"], "100.64.0.0/16");
        assert!(matches!(p[0], CidrProblem::Overlap { .. }), "{p:?}");
        let p = check(
            "10.255.0.0/16",
            &["100.65.0.0/16", "100.66.0.0/16", "100.67.0.0/16", "100.68.0.0/16"],
            "100.64.0.0/16",
        );
        assert_eq!(p, vec![CidrProblem::Quota { count: 5, quota: 5 }]);
        // A raised quota is honoured.
        let v = vpc(
            "10.255.0.0/16",
            &["100.65.0.0/16", "100.66.0.0/16", "100.67.0.0/16", "100.68.0.0/16"],
        );
        assert!(check_secondary_cidr(net("100.64.0.0/16"), &v, &[], 6).is_ok());
    }

    #[test]
    fn already_associated_is_not_a_problem() {
        let v = check_secondary_cidr(net("100.64.0.0/16"), &vpc("10.255.0.0/16", &["100.64.0.0/16"]), &[], 2);
        assert!(v.already_associated && v.is_ok());
    }

    #[test]
    fn route_rule() {
        let route = |dest: &str, target: &str| RouteDestination {
            route_table_id: "rtb-1".into(),
            destination: net(dest),
            target: target.into(),
        };
        let v = vpc("10.2.0.0/16", &[]);
        // AWS's own example: a route to 10.0.0.0/24 forbids 10.0.0.0/24 and larger, allows /25.
        let routes = [
            route("10.0.0.0/24", "vgw-1"),
            route("0.0.0.0/0", "igw-1"),
            route("10.2.0.0/16", "local"),
        ];
        let p = check_secondary_cidr(net("10.0.0.0/16"), &v, &routes, 5).problems;
        assert!(
            p.iter().any(|p| matches!(p, CidrProblem::RouteConflict { .. })),
            "{p:?}"
        );
        assert!(check_secondary_cidr(net("10.0.0.0/24"), &v, &routes, 5).problems.len() == 1);
        assert!(check_secondary_cidr(net("10.0.0.0/25"), &v, &routes, 5).is_ok());
        // A default route never conflicts; a TGW route to the CG-NAT block does.
        assert!(check_secondary_cidr(net("100.64.0.0/16"), &v, &routes, 5).is_ok());
        let tgw = [route("100.64.5.0/24", "tgw-1")];
        assert!(!check_secondary_cidr(net("100.64.0.0/16"), &v, &tgw, 5).is_ok());
    }

    #[test]
    fn every_problem_is_reported() {
        let v = vpc(
            "10.255.0.0/16",
            &["100.65.0.0/16", "100.66.0.0/16", "100.67.0.0/16", "100.68.0.0/16"],
        );
        let p = check_secondary_cidr(net("198.19.0.0/30"), &v, &[], 5).problems;
        assert_eq!(p.len(), 3, "{p:?}"); // size, restriction, quota
    }
}
