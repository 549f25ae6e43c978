//! IPv4 network rules of the migration, pure and table-tested: which secondary
//! CIDR AWS lets a VPC associate next to its primary CIDR, how the pod CIDR is
//! carved into per-AZ subnets, and how many addresses a subnet really offers.
//! `ipnet` does the address arithmetic.

mod cidr_rules;
mod subnets;

pub use cidr_rules::{AddressRange, CidrProblem, CidrVerdict, RouteDestination, VpcCidrs, check_secondary_cidr};
pub use subnets::{CarveError, auto_prefix_len, carve_even, usable_addresses};

use ipnet::Ipv4Net;

/// `a` and `b` share at least one address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Parses `a.b.c.d/n`, refusing host bits (`100.64.1.5/24`), and says what
/// was probably meant.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 CIDR block; write it as a.b.c.d/n, e.g. 100.64.0.0/16"))?;
    if net.trunc() != net {
        return Err(format!("`{s}` has host bits set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_overlap() {
        let a = parse_cidr("100.64.0.0/16").unwrap();
        let b = parse_cidr("100.64.1.0/24").unwrap();
        let c = parse_cidr("100.65.0.0/16").unwrap();
        assert!(overlaps(&a, &b) && overlaps(&b, &a));
        assert!(!overlaps(&a, &c));
        assert!(parse_cidr("100.64.1.5/24").unwrap_err().contains("100.64.1.0/24"));
        assert!(parse_cidr("100.64.0.0").unwrap_err().contains("not an IPv4 CIDR"));
        assert!(parse_cidr("300.1.1.1/8").is_err());
    }
}
