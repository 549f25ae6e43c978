//! Pod subnet sizing: splitting the pod CIDR evenly across availability zones
//! and counting the addresses a subnet really offers (AWS reserves the first
//! four and the last address of every subnet).

use ipnet::Ipv4Net;

/// Addresses AWS keeps in every subnet.
pub const AWS_RESERVED_PER_SUBNET: u64 = 5;

/// Addresses a subnet can hand to ENIs.
pub fn usable_addresses(subnet: &Ipv4Net) -> u64 {
    (1u64 << (32 - u32::from(subnet.prefix_len()))).saturating_sub(AWS_RESERVED_PER_SUBNET)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarveError {
    #[error("no availability zone to carve pod subnets for")]
    NoZones,
    #[error(
        "{block} cannot be split into {zones} subnets of at least /28; use a larger secondary CIDR or explicit pod subnets"
    )]
    TooSmall { block: Ipv4Net, zones: usize },
}

/// The prefix length that gives each of `zones` AZs an equal share of `block`:
/// 2 AZs → one bit (two /17s of a /16), 3–4 AZs → two bits (/18s), …
pub fn auto_prefix_len(block: &Ipv4Net, zones: usize) -> Result<u8, CarveError> {
    if zones == 0 {
        return Err(CarveError::NoZones);
    }
    let bits = usize::BITS - (zones - 1).leading_zeros();
    let prefix = u32::from(block.prefix_len()) + bits;
    if prefix > 28 {
        return Err(CarveError::TooSmall { block: *block, zones });
    }
    Ok(prefix as u8)
}

/// Splits `block` into the first `zones` equal subnets (in address order).
/// Unused quarters (3 AZs in four /18s) stay free for later.
pub fn carve_even(block: &Ipv4Net, zones: usize) -> Result<Vec<Ipv4Net>, CarveError> {
    let prefix = auto_prefix_len(block, zones)?;
    let subnets = block
        .subnets(prefix)
        .map_err(|_| CarveError::TooSmall { block: *block, zones })?;
    Ok(subnets.take(zones).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn usable() {
        assert_eq!(usable_addresses(&n("10.255.11.0/24")), 251);
        assert_eq!(usable_addresses(&n("100.64.0.0/17")), 32763);
        assert_eq!(usable_addresses(&n("100.64.0.0/28")), 11);
    }

    #[test]
    fn carving() {
        let b = n("100.64.0.0/16");
        assert_eq!(carve_even(&b, 1).unwrap(), vec![b]);
        assert_eq!(
            carve_even(&b, 2).unwrap(),
            vec![n("100.64.0.0/17"), n("100.64.128.0/17")]
        );
        let three = carve_even(&b, 3).unwrap();
        assert_eq!(
            three,
            vec![n("100.64.0.0/18"), n("100.64.64.0/18"), n("100.64.128.0/18")]
        );
        assert_eq!(carve_even(&b, 4).unwrap().len(), 4);
        assert!(carve_even(&b, 5).unwrap().iter().all(|s| s.prefix_len() == 19));
        assert_eq!(carve_even(&b, 0), Err(CarveError::NoZones));
        assert_eq!(
            carve_even(&n("100.64.0.0/27"), 2).unwrap(),
            vec![n("100.64.0.0/28"), n("100.64.0.16/28")]
        );
        assert!(matches!(
            carve_even(&n("100.64.0.0/27"), 3),
            Err(CarveError::TooSmall { .. })
        ));
        assert_eq!(carve_even(&n("100.64.0.0/27"), 1).unwrap().len(), 1);
    }
}
