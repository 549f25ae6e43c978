//! EC2 instance-type facts the simulated cluster needs: ENI and IPv4 limits,
//! vCPUs and memory, read from the repository's `data/instance-types.csv`
//! (generated from moto's DescribeInstanceTypes dump), and the max-pods
//! formulas derived from them.
//!
//! The sandbox parses the CSV itself instead of sharing podnet's code, so that
//! the world podnet is tested against is an independent implementation.

use std::collections::HashMap;
use std::sync::OnceLock;

const CSV: &str = include_str!("../../data/instance-types.csv");

/// One row of `data/instance-types.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceType {
    pub name: String,
    pub hypervisor: String,
    pub bare_metal: bool,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// ENIs on the default network card: what the CNI and max-pods use.
    pub enis: u32,
    pub ipv4_per_eni: u32,
    pub architecture: String,
}

impl InstanceType {
    /// Nitro (and bare metal) instances support prefix delegation.
    pub fn is_nitro(&self) -> bool {
        self.hypervisor == "nitro" || self.bare_metal
    }

    /// Secondary IPs the CNI can hand to pods with `enis` usable ENIs.
    pub fn pod_ips(&self, usable_enis: u32) -> u32 {
        usable_enis * self.ipv4_per_eni.saturating_sub(1)
    }

    /// The EKS default: `ENIs × (IPv4 per ENI − 1) + 2`, capped at 110, or
    /// 250 above 30 vCPUs (amazon-eks-ami's max-pods calculator).
    pub fn default_max_pods(&self) -> u32 {
        self.max_pods(0, false)
    }

    /// Max pods with `reserved_enis` ENIs kept away from pods (1 under custom
    /// networking, or Karpenter's `RESERVED_ENIS`), optionally with prefix
    /// delegation, capped as EKS caps it.
    pub fn max_pods(&self, reserved_enis: u32, prefix_delegation: bool) -> u32 {
        let enis = self.enis.saturating_sub(reserved_enis);
        let per_eni = if prefix_delegation && self.is_nitro() {
            self.ipv4_per_eni.saturating_sub(1) * 16
        } else {
            self.ipv4_per_eni.saturating_sub(1)
        };
        let raw = enis * per_eni + 2;
        let cap = if self.vcpus > 30 { 250 } else { 110 };
        raw.min(cap)
    }

    /// kubelet's allocatable after the EKS AMI's default reservations
    /// (kube-reserved cpu by core count, memory `11 × max_pods + 255` MiB,
    /// 100Mi eviction threshold). Only used to make nodes look real.
    pub fn allocatable(&self, max_pods: u32) -> (u32, u64) {
        let mut reserved_m = 0u32;
        for core in 0..self.vcpus {
            reserved_m += match core {
                0 => 60,
                1 => 10,
                2 | 3 => 5,
                _ => 2, // 0.25 % of a core, rounded up
            };
        }
        let cpu_m = (self.vcpus * 1000).saturating_sub(reserved_m);
        let mem_reserved_mib = 11 * u64::from(max_pods) + 255 + 100;
        let mem_mib = self.memory_mib.saturating_sub(mem_reserved_mib);
        (cpu_m, mem_mib)
    }
}

/// Parse errors of the embedded CSV (a build-time asset, so they are bugs).
#[derive(Debug, thiserror::Error)]
#[error("instance-types.csv line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

/// Parse the CSV format of `data/instance-types.csv`.
pub fn parse(text: &str) -> Result<Vec<InstanceType>, CsvError> {
    let mut out = Vec::new();
    let mut header: Option<Vec<&str>> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(cols) = &header else {
            header = Some(cells);
            continue;
        };
        let err = |message: String| CsvError { line: i + 1, message };
        let get = |name: &str| -> Result<&str, CsvError> {
            let idx = cols
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| err(format!("missing column {name}")))?;
            cells
                .get(idx)
                .copied()
                .ok_or_else(|| err(format!("missing cell {name}")))
        };
        let num = |name: &str| -> Result<u64, CsvError> {
            get(name)?.parse::<u64>().map_err(|e| err(format!("{name}: {e}")))
        };
        out.push(InstanceType {
            name: get("instance_type")?.to_string(),
            hypervisor: get("hypervisor")?.to_string(),
            bare_metal: get("bare_metal")? == "true",
            vcpus: num("vcpus")? as u32,
            memory_mib: num("memory_mib")?,
            enis: num("default_card_max_enis")? as u32,
            ipv4_per_eni: num("ipv4_per_eni")? as u32,
            architecture: get("architectures")?
                .split(['|', ';', ' '])
                .next()
                .unwrap_or("x86_64")
                .to_string(),
        });
    }
    Ok(out)
}

fn table() -> &'static HashMap<String, InstanceType> {
    static TABLE: OnceLock<HashMap<String, InstanceType>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The CSV is compiled in and covered by a unit test; an error here is
        // a broken build asset, reported by that test, so fall back to empty.
        parse(CSV)
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect()
    })
}

/// Look an instance type up by name (`t3.medium`).
pub fn lookup(name: &str) -> Option<&'static InstanceType> {
    table().get(name)
}

/// `amd64`/`arm64` as the `kubernetes.io/arch` label spells it.
pub fn k8s_arch(t: &InstanceType) -> &'static str {
    if t.architecture.starts_with("arm") {
        "arm64"
    } else {
        "amd64"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_csv_parses() {
        let all = parse(CSV).expect("csv parses");
        assert!(all.len() > 100);
    }

    #[test]
    fn brief_max_pods_figures() {
        let m = lookup("t3.medium").unwrap();
        assert_eq!(m.default_max_pods(), 17);
        assert_eq!(m.max_pods(1, false), 12);
        let l = lookup("t3.large").unwrap();
        assert_eq!(l.default_max_pods(), 35);
        assert_eq!(l.max_pods(1, false), 24);
        let m5 = lookup("m5.large").unwrap();
        assert_eq!(m5.default_max_pods(), 29);
        assert_eq!(m5.max_pods(1, false), 20);
        // prefix delegation is capped at 110 below 30 vCPUs
        assert_eq!(m5.max_pods(0, true), 110);
    }

    #[test]
    fn cap_is_250_above_30_vcpus() {
        let big = lookup("m5.24xlarge").unwrap();
        assert!(big.vcpus > 30);
        assert_eq!(big.default_max_pods(), 250);
    }

    #[test]
    fn allocatable_is_below_capacity() {
        let m = lookup("t3.medium").unwrap();
        let (cpu, mem) = m.allocatable(17);
        assert_eq!(cpu, 1930);
        assert!(mem < m.memory_mib);
    }
}
