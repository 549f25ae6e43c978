//! The sandbox's own IP accounting: which addresses of each subnet are taken,
//! and how the VPC CNI (ipamd) lays a node's pod addresses out over its ENIs.
//!
//! moto neither enforces subnet capacity nor survives being asked for more
//! addresses than a subnet holds (`AssignPrivateIpAddresses` then hangs), so
//! every address the sandbox gives to moto is chosen here first, explicitly.
//! AWS reserves five addresses per subnet: the network address, the next
//! three, and the broadcast address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// IP accounting failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("subnet {0} is not known to the sandbox")]
    UnknownSubnet(String),
    #[error("{ip} is outside subnet {subnet} ({cidr})")]
    Outside {
        ip: Ipv4Addr,
        subnet: String,
        cidr: Ipv4Net,
    },
    #[error("{ip} in subnet {subnet} is reserved by AWS")]
    Reserved { ip: Ipv4Addr, subnet: String },
    #[error("{ip} in subnet {subnet} is already in use")]
    InUse { ip: Ipv4Addr, subnet: String },
    #[error("subnet {subnet} has {free} free addresses, {wanted} wanted")]
    Exhausted { subnet: String, free: u32, wanted: u32 },
}

/// One subnet's address bitmap.
#[derive(Debug, Clone)]
pub struct SubnetPool {
    pub id: String,
    pub cidr: Ipv4Net,
    pub availability_zone: String,
    bits: Vec<u64>,
    size: u32,
    used: u32,
}

impl SubnetPool {
    pub fn new(id: impl Into<String>, cidr: Ipv4Net, availability_zone: impl Into<String>) -> Self {
        let cidr = cidr.trunc();
        let size = 1u32 << (32 - u32::from(cidr.prefix_len()));
        let mut pool = SubnetPool {
            id: id.into(),
            cidr,
            availability_zone: availability_zone.into(),
            bits: vec![0; (size as usize).div_ceil(64)],
            size,
            used: 0,
        };
        for off in [0, 1, 2, 3, size - 1] {
            pool.set(off);
        }
        pool
    }

    fn set(&mut self, off: u32) {
        let (w, b) = ((off / 64) as usize, off % 64);
        if self.bits[w] & (1 << b) == 0 {
            self.bits[w] |= 1 << b;
            self.used += 1;
        }
    }

    fn is_set(&self, off: u32) -> bool {
        self.bits[(off / 64) as usize] & (1 << (off % 64)) != 0
    }

    fn offset(&self, ip: Ipv4Addr) -> Result<u32, IpamError> {
        if !self.cidr.contains(&ip) {
            return Err(IpamError::Outside {
                ip,
                subnet: self.id.clone(),
                cidr: self.cidr,
            });
        }
        Ok(u32::from(ip) - u32::from(self.cidr.network()))
    }

    fn reserved_offset(&self, off: u32) -> bool {
        off <= 3 || off == self.size - 1
    }

    /// Addresses usable by ENIs: the CIDR's size minus AWS's five.
    pub fn usable(&self) -> u32 {
        self.size.saturating_sub(5)
    }

    /// Usable addresses nobody holds: what DescribeSubnets calls
    /// `AvailableIpAddressCount`.
    pub fn free(&self) -> u32 {
        self.size - self.used
    }

    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip).map(|o| self.is_set(o)).unwrap_or(false)
    }

    /// Mark an address taken (an address moto chose, or one named explicitly).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let off = self.offset(ip)?;
        if self.reserved_offset(off) {
            return Err(IpamError::Reserved {
                ip,
                subnet: self.id.clone(),
            });
        }
        if self.is_set(off) {
            return Err(IpamError::InUse {
                ip,
                subnet: self.id.clone(),
            });
        }
        self.set(off);
        Ok(())
    }

    /// Give an address back. Releasing an AWS-reserved or free address is a
    /// no-op, so callers may release what they are unsure they hold.
    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Ok(off) = self.offset(ip)
            && !self.reserved_offset(off)
            && self.is_set(off)
        {
            self.bits[(off / 64) as usize] &= !(1 << (off % 64));
            self.used -= 1;
        }
    }

    /// Take `n` addresses, lowest first, or none at all.
    pub fn allocate(&mut self, n: u32) -> Result<Vec<Ipv4Addr>, IpamError> {
        if n > self.free() {
            return Err(IpamError::Exhausted {
                subnet: self.id.clone(),
                free: self.free(),
                wanted: n,
            });
        }
        let base = u32::from(self.cidr.network());
        let mut out = Vec::with_capacity(n as usize);
        let mut w = 0usize;
        while out.len() < n as usize && w < self.bits.len() {
            if self.bits[w] != u64::MAX {
                for b in 0..64u32 {
                    let off = w as u32 * 64 + b;
                    if off >= self.size || out.len() == n as usize {
                        break;
                    }
                    if self.bits[w] & (1 << b) == 0 {
                        self.bits[w] |= 1 << b;
                        self.used += 1;
                        out.push(Ipv4Addr::from(base + off));
                    }
                }
            }
            w += 1;
        }
        Ok(out)
    }
}

/// Every subnet the sandbox accounts for, by subnet id.
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    subnets: BTreeMap<String, SubnetPool>,
}

impl Ipam {
    pub fn add_subnet(&mut self, pool: SubnetPool) {
        self.subnets.insert(pool.id.clone(), pool);
    }

    pub fn subnet(&self, id: &str) -> Option<&SubnetPool> {
        self.subnets.get(id)
    }

    pub fn subnet_mut(&mut self, id: &str) -> Result<&mut SubnetPool, IpamError> {
        self.subnets
            .get_mut(id)
            .ok_or_else(|| IpamError::UnknownSubnet(id.to_string()))
    }

    pub fn subnets(&self) -> impl Iterator<Item = &SubnetPool> {
        self.subnets.values()
    }

    /// The subnet holding `ip`, if any.
    pub fn subnet_of(&self, ip: Ipv4Addr) -> Option<&SubnetPool> {
        self.subnets.values().find(|s| s.cidr.contains(&ip))
    }
}

/// The warm-pool settings of aws-node that decide how many addresses a node
/// holds beyond what its pods use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmConfig {
    pub warm_ip_target: Option<u32>,
    pub minimum_ip_target: Option<u32>,
    /// ipamd's default is 1 when neither IP target is set.
    pub warm_eni_target: Option<u32>,
}

impl WarmConfig {
    /// Read the settings from aws-node env values.
    pub fn from_env<'a>(env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut c = WarmConfig::default();
        for (k, v) in env {
            let n = v.trim().parse::<u32>().ok();
            match k {
                "WARM_IP_TARGET" => c.warm_ip_target = n.filter(|n| *n > 0),
                "MINIMUM_IP_TARGET" => c.minimum_ip_target = n.filter(|n| *n > 0),
                "WARM_ENI_TARGET" => c.warm_eni_target = n,
                _ => {}
            }
        }
        c
    }
}

/// How many secondary addresses a node keeps on each of its ENIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLayout {
    /// Secondary addresses per ENI, index 0 being the primary ENI (device 0).
    /// An ENI that carries no pod addresses is still attached when listed.
    pub secondaries: Vec<u32>,
}

impl EniLayout {
    pub fn total_secondaries(&self) -> u32 {
        self.secondaries.iter().sum()
    }

    /// Subnet addresses the node consumes: one primary per ENI plus secondaries.
    pub fn subnet_addresses(&self) -> u32 {
        self.secondaries.len() as u32 + self.total_secondaries()
    }
}

/// Lay `pods` pod addresses (plus the warm pool) out over a node's ENIs the
/// way ipamd does in secondary-IP mode without custom networking: fill the
/// primary ENI first, attach further ENIs as needed.
///
/// `max_enis`/`ips_per_eni` come from the instance type. Returns `None` when
/// the pods do not fit on the node at all.
pub fn layout_node(pods: u32, warm: WarmConfig, max_enis: u32, ips_per_eni: u32) -> Option<EniLayout> {
    let per_eni = ips_per_eni.saturating_sub(1);
    let capacity = max_enis * per_eni;
    if pods > capacity || per_eni == 0 {
        return None;
    }
    let target = if warm.warm_ip_target.is_some() || warm.minimum_ip_target.is_some() {
        let want = pods + warm.warm_ip_target.unwrap_or(0);
        want.max(warm.minimum_ip_target.unwrap_or(0)).min(capacity)
    } else {
        // WARM_ENI_TARGET (default 1): whole ENIs, plus that many spare ones.
        let enis_for_pods = pods.div_ceil(per_eni).max(1);
        let enis = (enis_for_pods + warm.warm_eni_target.unwrap_or(1)).min(max_enis);
        enis * per_eni
    };
    let mut left = target;
    let mut secondaries = Vec::new();
    while left > 0 && (secondaries.len() as u32) < max_enis {
        let here = left.min(per_eni);
        secondaries.push(here);
        left -= here;
    }
    if secondaries.is_empty() {
        secondaries.push(0);
    }
    Some(EniLayout { secondaries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str) -> SubnetPool {
        SubnetPool::new("subnet-1", cidr.parse().unwrap(), "ap-northeast-2a")
    }

    #[test]
    fn slash_24_has_251_usable() {
        let p = pool("10.255.11.0/24");
        assert_eq!(p.usable(), 251);
        assert_eq!(p.free(), 251);
    }

    #[test]
    fn allocates_lowest_first_skipping_reserved() {
        let mut p = pool("10.255.11.0/24");
        let ips = p.allocate(2).unwrap();
        assert_eq!(
            ips,
            vec![
                "10.255.11.4".parse::<Ipv4Addr>().unwrap(),
                "10.255.11.5".parse().unwrap()
            ]
        );
        assert_eq!(p.free(), 249);
    }

    #[test]
    fn never_over_allocates() {
        let mut p = pool("10.0.0.0/28");
        assert_eq!(p.usable(), 11);
        assert!(p.allocate(12).is_err());
        assert_eq!(p.allocate(11).unwrap().len(), 11);
        assert_eq!(p.free(), 0);
        assert!(matches!(p.allocate(1), Err(IpamError::Exhausted { free: 0, .. })));
        p.release("10.0.0.7".parse().unwrap());
        assert_eq!(p.allocate(1).unwrap(), vec!["10.0.0.7".parse::<Ipv4Addr>().unwrap()]);
    }

    #[test]
    fn reserve_rejects_reserved_duplicate_and_outside() {
        let mut p = pool("10.255.11.0/24");
        assert!(matches!(
            p.reserve("10.255.11.2".parse().unwrap()),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            p.reserve("10.255.11.255".parse().unwrap()),
            Err(IpamError::Reserved { .. })
        ));
        p.reserve("10.255.11.10".parse().unwrap()).unwrap();
        assert!(matches!(
            p.reserve("10.255.11.10".parse().unwrap()),
            Err(IpamError::InUse { .. })
        ));
        assert!(matches!(
            p.reserve("10.255.12.10".parse().unwrap()),
            Err(IpamError::Outside { .. })
        ));
        // the allocator skips what was reserved explicitly
        let got = p.allocate(7).unwrap();
        assert!(!got.contains(&"10.255.11.10".parse().unwrap()));
    }

    #[test]
    fn warm_ip_target_layout() {
        let warm = WarmConfig {
            warm_ip_target: Some(2),
            minimum_ip_target: Some(4),
            warm_eni_target: None,
        };
        // t3.medium: 3 ENIs x 6 IPs -> 5 secondaries per ENI
        assert_eq!(layout_node(0, warm, 3, 6).unwrap().secondaries, vec![4]);
        assert_eq!(layout_node(5, warm, 3, 6).unwrap().secondaries, vec![5, 2]);
        assert_eq!(layout_node(15, warm, 3, 6).unwrap().secondaries, vec![5, 5, 5]);
        assert_eq!(layout_node(15, warm, 3, 6).unwrap().subnet_addresses(), 18);
        assert!(layout_node(16, warm, 3, 6).is_none());
    }

    #[test]
    fn warm_eni_default_layout() {
        let l = layout_node(3, WarmConfig::default(), 3, 6).unwrap();
        assert_eq!(l.secondaries, vec![5, 5]);
    }

    #[test]
    fn warm_config_from_env() {
        let c = WarmConfig::from_env([("WARM_IP_TARGET", "2"), ("MINIMUM_IP_TARGET", "4")]);
        assert_eq!(c.warm_ip_target, Some(2));
        assert_eq!(c.minimum_ip_target, Some(4));
    }
}
