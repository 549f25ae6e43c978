//! Where seeded pods run: a deterministic placement of DaemonSet, system and
//! workload pods over the scenario's nodes that respects each node's max
//! pods and its allocatable cpu and memory, alternating zones so workloads
//! spread evenly. Pure, so the arithmetic is unit-tested.

/// One node's room.
#[derive(Debug, Clone)]
pub struct Slot {
    pub max_pods: u32,
    pub cpu_m: u32,
    pub mem_mib: u64,
    /// Managed node group nodes (system pods stay off Karpenter nodes).
    pub managed: bool,
    /// A Windows node: the scenario's pods (all Linux) stay off it.
    pub windows: bool,
    pub zone: usize,
    pub used_pods: u32,
    pub used_cpu_m: u32,
    pub used_mem_mib: u64,
}

impl Slot {
    pub fn new(max_pods: u32, cpu_m: u32, mem_mib: u64, managed: bool, zone: usize) -> Self {
        Slot {
            max_pods,
            cpu_m,
            mem_mib,
            managed,
            windows: false,
            zone,
            used_pods: 0,
            used_cpu_m: 0,
            used_mem_mib: 0,
        }
    }

    fn fits(&self, d: &Demand) -> bool {
        !self.windows
            && self.used_pods < self.max_pods
            && self.used_cpu_m + d.cpu_m <= self.cpu_m
            && self.used_mem_mib + d.mem_mib <= self.mem_mib
            && (!d.managed_only || self.managed)
    }

    fn take(&mut self, d: &Demand) {
        self.used_pods += 1;
        self.used_cpu_m += d.cpu_m;
        self.used_mem_mib += d.mem_mib;
    }

    pub fn free_pods(&self) -> u32 {
        self.max_pods.saturating_sub(self.used_pods)
    }
}

/// Replicas wanting room.
#[derive(Debug, Clone)]
pub struct Demand {
    pub name: String,
    pub replicas: u32,
    pub cpu_m: u32,
    pub mem_mib: u64,
    pub managed_only: bool,
    /// At most one replica per node (anti-affinity on hostname).
    pub one_per_node: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "workload {name}: only {placed} of {wanted} replicas fit on the scenario's nodes (max pods, cpu and memory); add nodes or lower replicas"
)]
pub struct PlacementError {
    pub name: String,
    pub placed: u32,
    pub wanted: u32,
}

/// Visit nodes alternating zones: node 0 of zone a, node 0 of zone c, node
/// 1 of zone a, …
pub fn zone_interleaved(slots: &[Slot]) -> Vec<usize> {
    let zones = slots.iter().map(|s| s.zone).max().map_or(0, |z| z + 1);
    let mut per_zone: Vec<Vec<usize>> = vec![Vec::new(); zones];
    for (i, s) in slots.iter().enumerate() {
        per_zone[s.zone].push(i);
    }
    let mut out = Vec::with_capacity(slots.len());
    let longest = per_zone.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..longest {
        for z in &per_zone {
            if let Some(i) = z.get(k) {
                out.push(*i);
            }
        }
    }
    out
}

/// Place one replica per node on every node (DaemonSets).
pub fn place_everywhere(slots: &mut [Slot], d: &Demand) -> Vec<usize> {
    let mut out = Vec::new();
    // aws-node and kube-proxy are Linux DaemonSets.
    for (i, s) in slots.iter_mut().enumerate().filter(|(_, s)| !s.windows) {
        s.take(d);
        out.push(i);
    }
    out
}

/// Place `d.replicas` replicas round-robin; returns the node of each.
pub fn place(slots: &mut [Slot], d: &Demand, cursor: &mut usize) -> Result<Vec<usize>, PlacementError> {
    let order = zone_interleaved(slots);
    let n = order.len();
    let mut out = Vec::with_capacity(d.replicas as usize);
    let mut used_nodes = Vec::new();
    for _ in 0..d.replicas {
        let mut chosen = None;
        for step in 0..n {
            let i = order[(*cursor + step) % n];
            if slots[i].fits(d) && !(d.one_per_node && used_nodes.contains(&i)) {
                chosen = Some((i, step));
                break;
            }
        }
        let Some((i, step)) = chosen else {
            return Err(PlacementError {
                name: d.name.clone(),
                placed: out.len() as u32,
                wanted: d.replicas,
            });
        };
        slots[i].take(d);
        out.push(i);
        used_nodes.push(i);
        *cursor = (*cursor + step + 1) % n.max(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(name: &str, replicas: u32, cpu: u32) -> Demand {
        Demand {
            name: name.into(),
            replicas,
            cpu_m: cpu,
            mem_mib: 64,
            managed_only: false,
            one_per_node: false,
        }
    }

    #[test]
    fn spreads_over_zones_and_respects_max_pods() {
        let mut slots = vec![
            Slot::new(3, 2000, 4000, true, 0),
            Slot::new(3, 2000, 4000, false, 0),
            Slot::new(3, 2000, 4000, false, 1),
        ];
        let mut c = 0;
        let got = place(&mut slots, &demand("w", 9, 10), &mut c).unwrap();
        assert_eq!(got.len(), 9);
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(s.used_pods, 3, "node {i}");
        }
        let err = place(&mut slots, &demand("more", 1, 10), &mut c).unwrap_err();
        assert_eq!(err.placed, 0);
    }

    #[test]
    fn cpu_limits_placement() {
        let mut slots = vec![Slot::new(100, 100, 4000, true, 0)];
        let mut c = 0;
        let err = place(&mut slots, &demand("w", 3, 40), &mut c).unwrap_err();
        assert_eq!(err.placed, 2);
    }

    #[test]
    fn system_pods_stay_on_managed_nodes_one_per_node() {
        let mut slots = vec![
            Slot::new(10, 4000, 8000, false, 0),
            Slot::new(10, 4000, 8000, true, 0),
            Slot::new(10, 4000, 8000, true, 1),
        ];
        let mut d = demand("karpenter", 2, 1000);
        d.managed_only = true;
        d.one_per_node = true;
        let mut c = 0;
        let got = place(&mut slots, &d, &mut c).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|i| slots[*i].managed));
        assert_ne!(got[0], got[1]);
    }

    #[test]
    fn interleaves_zones() {
        let slots = vec![
            Slot::new(1, 1, 1, true, 0),
            Slot::new(1, 1, 1, true, 0),
            Slot::new(1, 1, 1, true, 1),
        ];
        assert_eq!(zone_interleaved(&slots), vec![0, 2, 1]);
    }
}
