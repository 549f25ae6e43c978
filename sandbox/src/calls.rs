//! The call log (what podnet asked EC2, EKS and Kubernetes) and fault
//! injection (make the next N calls of an action fail with a chosen status
//! and error code), shared by the EC2 proxy, the EKS server and the
//! Kubernetes API.
//!
//! Tests assert on the log — "a second apply makes no mutating AWS call" —
//! and use faults to drive podnet's retry and resume logic. The sandbox's
//! own seeding and controllers talk to moto and the store directly, so they
//! never appear here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Which API a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Ec2,
    Eks,
    Kube,
    /// The sandbox's STS (`GetCallerIdentity`).
    Sts,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Order of arrival, from 1.
    pub seq: u64,
    pub service: Service,
    /// EC2: the query `Action` (`DescribeVpcs`); EKS: the operation name
    /// (`UpdateAddon`); Kubernetes: `<verb> <resource>[/<subresource>]`
    /// (`create pods/eviction`, `patch nodes`).
    pub action: String,
    pub mutating: bool,
    /// HTTP status returned to the caller.
    pub status: u16,
    /// RFC 3339 with milliseconds.
    pub at: String,
    /// The answer came from an injected fault, not from the backend.
    pub injected: bool,
    /// Request method and path (with query), for Kubernetes and EKS calls.
    pub path: String,
}

/// A fault to inject: the next `count` calls of `action` on `service` fail
/// with HTTP `status` and error `code` (EC2: XML `<Code>`; EKS:
/// `x-amzn-errortype`; Kubernetes: the Status `reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub service: Service,
    pub action: String,
    #[serde(default = "one")]
    pub count: u32,
    pub status: u16,
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// Convenience constructor: fail the next `count` calls.
    pub fn new(service: Service, action: impl Into<String>, count: u32, status: u16, code: impl Into<String>) -> Self {
        Fault {
            service,
            action: action.into(),
            count,
            status,
            code: code.into(),
            message: None,
        }
    }

    pub fn with_message(mut self, m: impl Into<String>) -> Self {
        self.message = Some(m.into());
        self
    }

    pub fn message_or_default(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("injected by podnet-sandbox: {}", self.code))
    }
}

/// Calls beyond this are dropped from the front of the log.
const MAX_CALLS: usize = 200_000;

#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
    seq: AtomicU64,
}

/// Is an EC2 query action read-only?
pub fn ec2_mutating(action: &str) -> bool {
    !(action.starts_with("Describe") || action.starts_with("Get") || action.starts_with("List"))
}

impl CallLog {
    pub fn record(&self, service: Service, action: &str, mutating: bool, status: u16, injected: bool, path: &str) {
        let call = Call {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            service,
            action: action.to_string(),
            mutating,
            status,
            at: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            injected,
            path: path.to_string(),
        };
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.len() >= MAX_CALLS {
            calls.drain(..MAX_CALLS / 10);
        }
        calls.push(call);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn inject(&self, fault: Fault) {
        if fault.count > 0 {
            self.faults.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
        }
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear_faults(&self) {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Consume one use of the first fault matching the call, if any.
    pub fn take_fault(&self, service: Service, action: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let i = faults.iter().position(|f| f.service == service && f.action == action)?;
        let f = faults[i].clone();
        faults[i].count -= 1;
        if faults[i].count == 0 {
            faults.remove(i);
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed() {
        let log = CallLog::default();
        log.inject(Fault::new(Service::Ec2, "CreateSubnet", 2, 503, "RequestLimitExceeded"));
        assert!(log.take_fault(Service::Ec2, "DescribeVpcs").is_none());
        assert!(log.take_fault(Service::Eks, "CreateSubnet").is_none());
        assert!(log.take_fault(Service::Ec2, "CreateSubnet").is_some());
        assert!(log.take_fault(Service::Ec2, "CreateSubnet").is_some());
        assert!(log.take_fault(Service::Ec2, "CreateSubnet").is_none());
    }

    #[test]
    fn log_records_in_order() {
        let log = CallLog::default();
        log.record(Service::Ec2, "DescribeVpcs", false, 200, false, "");
        log.record(Service::Ec2, "CreateSubnet", true, 200, false, "");
        let c = log.calls();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].seq + 1, c[1].seq);
        assert!(ec2_mutating("CreateSubnet"));
        assert!(!ec2_mutating("DescribeSubnets"));
        log.clear();
        assert!(log.calls().is_empty());
    }
}
