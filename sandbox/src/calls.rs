//! The call log (what podnet asked EC2, EKS and Kubernetes) and fault
//! injection (make the next N calls of an action fail with a chosen status
//! and error code, or a seeded share of them: a throttling storm), shared by
//! the EC2 proxy, the EKS server and the Kubernetes API.
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
    /// The sandbox's STS (`GetCallerIdentity`, `DecodeAuthorizationMessage`).
    Sts,
    /// The sandbox's IAM (`SimulatePrincipalPolicy`), on the STS port.
    Iam,
    /// S3 (moto's), through the S3 proxy.
    S3,
    /// The sandbox's Auto Scaling (`crate::autoscaling`).
    Autoscaling,
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
/// `x-amzn-errortype`; Kubernetes: the Status `reason`). With `skip`, the
/// first `skip` matching calls pass untouched, so a test can fail exactly
/// the third `patch deployments` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub service: Service,
    pub action: String,
    #[serde(default = "one")]
    pub count: u32,
    pub status: u16,
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub skip: u32,
    /// Fail this share (0 to 1) of the matching calls, drawn from `seed`,
    /// instead of the next `count`; such a fault stays until cleared. With
    /// `action` `"*"`, a storm over a whole service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default)]
    pub seed: u64,
    /// The seconds a Kubernetes 429 asks the client to wait (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// Kubernetes writes only: instead of failing the next `count` writes,
    /// race each with a concurrent writer's update of the same object just
    /// before it is served (`status` and `code` are then unused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub race: bool,
}

/// An injected fault and the draws of its rate.
#[derive(Debug)]
struct Armed {
    fault: Fault,
    draws: fastrand::Rng,
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
            skip: 0,
            rate: None,
            seed: 0,
            retry_after: None,
            race: false,
        }
    }

    /// Race the next `count` Kubernetes writes of `action` (`"*"`: every
    /// write) with a concurrent update of the object they change.
    pub fn race(action: impl Into<String>, count: u32) -> Self {
        Fault {
            race: true,
            ..Fault::new(Service::Kube, action, count, 409, "Conflict")
        }
    }

    /// Fail a seeded share of the calls of `action` (`"*"`: every action of
    /// `service`) until the faults are cleared.
    pub fn at_rate(
        service: Service,
        action: impl Into<String>,
        rate: f64,
        seed: u64,
        status: u16,
        code: impl Into<String>,
    ) -> Self {
        Fault {
            rate: Some(rate),
            seed,
            ..Fault::new(service, action, 1, status, code)
        }
    }

    /// What is wrong with it, naming the field.
    pub fn invalid(&self) -> Option<String> {
        if self.race && self.service != Service::Kube {
            return Some("race applies to Kubernetes writes only (service \"kube\")".into());
        }
        if self.race && self.rate.is_some() {
            return Some("race takes a count, not a rate".into());
        }
        match self.rate {
            Some(r) if !(0.0..=1.0).contains(&r) => Some(format!("rate must be between 0 and 1, not {r}")),
            _ if !(400..=599).contains(&self.status) => {
                Some(format!("status must be an HTTP error (400-599), not {}", self.status))
            }
            _ => None,
        }
    }

    fn matches(&self, service: Service, action: &str) -> bool {
        !self.race && self.service == service && (self.action == "*" || self.action == action)
    }

    /// Let the first `n` matching calls through before failing any.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
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
    faults: Mutex<Vec<Armed>>,
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

    /// Arms a fault; one that [`Fault::invalid`] refuses, or with nothing to
    /// fail, is ignored.
    pub fn inject(&self, fault: Fault) {
        if (fault.count > 0 || fault.rate.is_some()) && fault.invalid().is_none() {
            let draws = fastrand::Rng::with_seed(fault.seed);
            self.faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Armed { fault, draws });
        }
    }

    pub fn faults(&self) -> Vec<Fault> {
        let faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.iter().map(|a| a.fault.clone()).collect()
    }

    pub fn clear_faults(&self) {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Consume one use of the first fault matching the call, if any.
    /// Whether to race this Kubernetes write (consumes one use of the first
    /// race fault matching it).
    pub fn take_race(&self, action: &str) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = faults.iter().position(|a| {
            a.fault.race && a.fault.service == Service::Kube && (a.fault.action == "*" || a.fault.action == action)
        }) else {
            return false;
        };
        faults[i].fault.count -= 1;
        if faults[i].fault.count == 0 {
            faults.remove(i);
        }
        true
    }

    /// A rate fault draws once per matching call; the first counted fault
    /// matching the call fails it.
    pub fn take_fault(&self, service: Service, action: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        for a in faults.iter_mut().filter(|a| a.fault.matches(service, action)) {
            if let Some(rate) = a.fault.rate
                && a.draws.f64() < rate
            {
                return Some(a.fault.clone());
            }
        }
        let i = faults
            .iter()
            .position(|a| a.fault.rate.is_none() && a.fault.matches(service, action))?;
        let a = &mut faults[i];
        if a.fault.skip > 0 {
            a.fault.skip -= 1;
            return None;
        }
        let f = a.fault.clone();
        a.fault.count -= 1;
        if a.fault.count == 0 {
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
    fn a_rate_fails_a_seeded_share_of_every_matching_call() {
        let draw = |seed: u64| {
            let log = CallLog::default();
            log.inject(Fault::at_rate(
                Service::Ec2,
                "*",
                0.2,
                seed,
                503,
                "RequestLimitExceeded",
            ));
            (0..1000)
                .map(|i| {
                    let action = if i % 2 == 0 { "DescribeVpcs" } else { "CreateSubnet" };
                    log.take_fault(Service::Ec2, action).is_some()
                })
                .collect::<Vec<bool>>()
        };
        let failed = draw(7).iter().filter(|f| **f).count();
        assert!((120..=280).contains(&failed), "{failed} of 1000 at 20 %");
        assert_eq!(draw(7), draw(7), "the same seed, the same storm");
        assert_ne!(draw(7), draw(8));
        let log = CallLog::default();
        log.inject(Fault::at_rate(Service::Ec2, "*", 1.0, 0, 503, "RequestLimitExceeded"));
        assert!(
            log.take_fault(Service::Eks, "DescribeAddon").is_none(),
            "another service"
        );
        assert!(
            Fault::at_rate(Service::Ec2, "*", 1.5, 0, 503, "X")
                .invalid()
                .unwrap()
                .contains("rate must be between 0 and 1")
        );
    }

    #[test]
    fn a_race_is_taken_by_writes_only_and_never_fails_a_call() {
        let log = CallLog::default();
        log.inject(Fault::race("*", 2));
        assert!(log.take_fault(Service::Kube, "patch deployments").is_none());
        assert!(log.take_race("patch deployments"));
        assert!(log.take_race("update nodes"));
        assert!(!log.take_race("patch deployments"), "used up");
        let mut ec2 = Fault::race("*", 1);
        ec2.service = Service::Ec2;
        assert!(ec2.invalid().unwrap().contains("Kubernetes writes only"));
        let storm = Fault {
            rate: Some(0.5),
            ..Fault::race("*", 0)
        };
        assert!(storm.invalid().unwrap().contains("not a rate"));
        log.inject(storm);
        assert!(log.faults().is_empty(), "refused, never armed");
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
