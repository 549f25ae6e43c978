//! The EKS control plane's reach into the VPC, and what it records about it.
//!
//! The API server runs in an AWS-owned VPC and reaches the cluster's pods
//! through ENIs EKS places in the cluster subnets. A CIDR block associated
//! with the VPC after the cluster was created is usable by nodes at once but
//! not by the control plane: "It can take a cluster up to five hours for a
//! CIDR block that you associated with a VPC to be recognized"
//! (<https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>,
//! "Subnet requirements and considerations"). Until then every call the API
//! server makes to a pod in that block times out: admission webhooks,
//! aggregated APIs (`APIService`), `kubectl exec/logs` through the kubelet
//! excluded (those go to the node's address).
//!
//! [`ControlPlane`] keeps the blocks associated after the cluster existed
//! (the EC2 proxy tells it of every successful `AssociateVpcCidrBlock`), the
//! recognition delay (simulated time; 0 turns it off), and a log of what the
//! API server could not reach, so a test can assert that nothing went dark.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::Clock;

/// The default recognition delay (simulated): long enough that a migration
/// started right after associating the CIDR moves pods before the control
/// plane reaches them, short enough to rehearse (80 s at the default scale).
pub const DEFAULT_RECOGNITION: Duration = Duration::from_secs(2 * 3600);

/// One thing the API server failed to reach.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unreachable {
    /// `webhook` (an admission call refused or skipped) or `apiservice`.
    pub kind: &'static str,
    /// The webhook's or the APIService's name.
    pub name: String,
    /// What the API server answered or reported.
    pub message: String,
    /// Was a request refused because of it (a `failurePolicy: Fail`
    /// webhook), as opposed to admitted anyway or only reported?
    pub refused: bool,
    /// Simulated seconds since the sandbox started.
    pub at_secs: u64,
}

#[derive(Debug)]
struct Late {
    cidr: Ipv4Net,
    at: Duration,
}

/// The API server's view of the VPC.
#[derive(Debug)]
pub struct ControlPlane {
    clock: Clock,
    delay: Mutex<Duration>,
    late: Mutex<Vec<Late>>,
    log: Mutex<Vec<Unreachable>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ControlPlane {
    pub fn new(clock: Clock, delay: Duration) -> Self {
        ControlPlane {
            clock,
            delay: Mutex::new(delay),
            late: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    /// Changes the recognition delay; blocks already associated are judged
    /// by the new one from now on (`0` recognises them all at once).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    /// A block associated with the cluster's VPC now.
    pub fn associated(&self, cidr: Ipv4Net) {
        let mut late = lock(&self.late);
        if !late.iter().any(|l| l.cidr == cidr) {
            late.push(Late {
                cidr,
                at: self.clock.elapsed(),
            });
        }
    }

    /// Called by the EC2 proxy with every successful answer.
    pub fn observe(&self, action: &str, answer: &str) {
        if action != "AssociateVpcCidrBlock" {
            return;
        }
        let cidr = answer
            .split("<cidrBlock>")
            .nth(1)
            .and_then(|rest| rest.split("</cidrBlock>").next())
            .and_then(|s| s.trim().parse::<Ipv4Net>().ok());
        if let Some(cidr) = cidr {
            self.associated(cidr);
        }
    }

    /// Can the API server open a connection to `ip`? Every address outside a
    /// late block is reachable (the cluster's own subnets, the service CIDR).
    pub fn reaches(&self, ip: Ipv4Addr) -> bool {
        let now = self.clock.elapsed();
        let delay = self.delay();
        lock(&self.late)
            .iter()
            .filter(|l| l.cidr.contains(&ip))
            .all(|l| now >= l.at.saturating_add(delay))
    }

    /// Late blocks not recognised yet, with the simulated time left.
    pub fn pending(&self) -> Vec<(Ipv4Net, Duration)> {
        let now = self.clock.elapsed();
        let delay = self.delay();
        lock(&self.late)
            .iter()
            .filter(|l| now < l.at.saturating_add(delay))
            .map(|l| (l.cidr, l.at.saturating_add(delay) - now))
            .collect()
    }

    pub fn record(&self, kind: &'static str, name: &str, message: &str, refused: bool) {
        lock(&self.log).push(Unreachable {
            kind,
            name: name.to_string(),
            message: message.to_string(),
            refused,
            at_secs: self.clock.elapsed().as_secs(),
        });
    }

    /// Everything the API server failed to reach so far, oldest first.
    pub fn unreachable(&self) -> Vec<Unreachable> {
        lock(&self.log).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.log).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_late_block_is_unreachable_until_recognised() {
        let cp = ControlPlane::new(Clock::new(1.0), Duration::from_secs(3600));
        cp.observe(
            "AssociateVpcCidrBlock",
            "<AssociateVpcCidrBlockResponse><cidrBlockAssociation><cidrBlock>100.64.0.0/16</cidrBlock></cidrBlockAssociation></AssociateVpcCidrBlockResponse>",
        );
        assert!(!cp.reaches(ip("100.64.3.4")));
        assert!(cp.reaches(ip("10.0.1.5")), "the original block stays reachable");
        assert_eq!(cp.pending().len(), 1);
        cp.set_delay(Duration::ZERO);
        assert!(cp.reaches(ip("100.64.3.4")));
        assert!(cp.pending().is_empty());
    }

    #[test]
    fn other_actions_and_failed_parses_change_nothing() {
        let cp = ControlPlane::new(Clock::new(1.0), Duration::from_secs(3600));
        cp.observe("CreateSubnet", "<cidrBlock>100.64.0.0/19</cidrBlock>");
        cp.observe("AssociateVpcCidrBlock", "<cidrBlock>nonsense</cidrBlock>");
        assert!(cp.pending().is_empty());
    }

    #[test]
    fn the_log_keeps_what_went_dark() {
        let cp = ControlPlane::new(Clock::new(1.0), Duration::ZERO);
        cp.record("webhook", "mpod.elbv2.k8s.aws", "context deadline exceeded", true);
        assert_eq!(cp.unreachable().len(), 1);
        assert!(cp.unreachable()[0].refused);
        cp.clear_log();
        assert!(cp.unreachable().is_empty());
    }
}
