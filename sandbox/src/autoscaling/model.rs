//! The Auto Scaling groups themselves and the rules the API holds them to,
//! as the Amazon EC2 Auto Scaling API Reference states them:
//! - `UpdateAutoScalingGroup` / `SetDesiredCapacity`: the desired capacity
//!   stays within `[MinSize, MaxSize]` (`ValidationError` otherwise); a new
//!   `MinSize` above the desired capacity raises it, a new `MaxSize` below it
//!   lowers it, when no `DesiredCapacity` is given;
//! - `TerminateInstanceInAutoScalingGroup`: `ShouldDecrementDesiredCapacity`
//!   is required; without the decrement the group launches a replacement;
//!   with it, the desired capacity may not fall below `MinSize`; an instance
//!   that is no group's is refused.
//!
//! The work the service does afterwards (launching, terminating) is the
//! controller's (`crate::controllers::autoscaling`); here is only the state.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// An Auto Scaling error: HTTP status, code, message (awsQuery shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AsError {
    pub fn validation(message: impl Into<String>) -> AsError {
        AsError {
            status: 400,
            code: "ValidationError".into(),
            message: message.into(),
        }
    }
}

/// A group's launch template as written: `Version` is `$Latest`,
/// `$Default` or a version number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub id: String,
    pub name: String,
    pub version: String,
}

/// An instance's lifecycle state (the subset the sandbox goes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Pending,
    InService,
    Terminating,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Pending => "Pending",
            Lifecycle::InService => "InService",
            Lifecycle::Terminating => "Terminating",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub lifecycle: Lifecycle,
    /// The template version the instance was launched from (a number).
    pub template_version: String,
    /// The Kubernetes node it registers as (sandbox-internal).
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
    pub propagate_at_launch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub arn: String,
    pub template: TemplateSpec,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    /// `VPCZoneIdentifier`, in order.
    pub subnets: Vec<String>,
    pub zones: Vec<String>,
    pub instances: Vec<Instance>,
    pub tags: Vec<Tag>,
    pub created: String,
}

impl Group {
    /// Instances that count toward the desired capacity.
    pub fn live(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
            .count()
    }
}

/// What `UpdateAutoScalingGroup` asks to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub template: Option<TemplateSpec>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub desired: Option<u32>,
}

/// What `TerminateInstanceInAutoScalingGroup` started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: String,
    pub group: String,
    pub instance: String,
    pub zone: String,
    pub previous_desired: u32,
    pub decrement: bool,
}

/// Every group, by name.
#[derive(Default)]
pub struct Groups {
    groups: Mutex<BTreeMap<String, Group>>,
}

fn out_of_bounds(desired: u32, min: u32, max: u32) -> AsError {
    AsError::validation(format!(
        "Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
    ))
}

fn not_found(name: &str) -> AsError {
    AsError::validation(format!(
        "AutoScalingGroup name not found - AutoScalingGroup {name} not found"
    ))
}

impl Groups {
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, g: Group) {
        self.lock().insert(g.name.clone(), g);
    }

    pub fn get(&self, name: &str) -> Option<Group> {
        self.lock().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Group> {
        self.lock().values().cloned().collect()
    }

    /// `UpdateAutoScalingGroup`'s capacity and template rules.
    pub fn update(&self, name: &str, u: Update) -> Result<(), AsError> {
        let mut all = self.lock();
        let g = all.get_mut(name).ok_or_else(|| not_found(name))?;
        let min = u.min.unwrap_or(g.min);
        let max = u.max.unwrap_or(g.max);
        if min > max {
            return Err(AsError::validation(format!(
                "Max bound, {max}, must be greater than or equal to min bound, {min}"
            )));
        }
        let desired = match u.desired {
            Some(d) if d < min || d > max => return Err(out_of_bounds(d, min, max)),
            Some(d) => d,
            None => g.desired.clamp(min, max),
        };
        g.min = min;
        g.max = max;
        g.desired = desired;
        if let Some(t) = u.template {
            g.template = t;
        }
        Ok(())
    }

    /// `SetDesiredCapacity`.
    pub fn set_desired(&self, name: &str, desired: u32) -> Result<(), AsError> {
        let mut all = self.lock();
        let g = all.get_mut(name).ok_or_else(|| not_found(name))?;
        if desired < g.min || desired > g.max {
            return Err(AsError::validation(format!(
                "New SetDesiredCapacity value {desired} is below min value {} for the AutoScalingGroup.",
                g.min
            ))
            .with_max(desired, g.max));
        }
        g.desired = desired;
        Ok(())
    }

    /// `TerminateInstanceInAutoScalingGroup`: the instance goes to
    /// `Terminating`; the controller terminates it and, without the
    /// decrement, launches its replacement.
    pub fn terminate(&self, instance: &str, decrement: bool) -> Result<Activity, AsError> {
        let mut all = self.lock();
        let g = all
            .values_mut()
            .find(|g| g.instances.iter().any(|i| i.id == instance))
            .ok_or_else(|| {
                AsError::validation(format!(
                    "Instance Id not found - No managed instance found for instance ID: {instance}"
                ))
            })?;
        let previous = g.desired;
        let already = g
            .instances
            .iter()
            .any(|i| i.id == instance && i.lifecycle == Lifecycle::Terminating);
        if decrement && !already {
            if g.desired <= g.min {
                return Err(AsError::validation(format!(
                    "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.",
                    g.min
                )));
            }
            g.desired -= 1;
        }
        let i = g
            .instances
            .iter_mut()
            .find(|i| i.id == instance)
            .ok_or_else(|| AsError::validation("instance vanished"))?;
        i.lifecycle = Lifecycle::Terminating;
        Ok(Activity {
            id: uuid::Uuid::new_v4().to_string(),
            group: g.name.clone(),
            instance: instance.to_string(),
            zone: i.zone.clone(),
            previous_desired: previous,
            decrement,
        })
    }

    /// The group and state of each instance asked for (unknown ones are
    /// left out, as `DescribeAutoScalingInstances` leaves them out).
    pub fn instances(&self, ids: &[String]) -> Vec<(String, TemplateSpec, Instance)> {
        let all = self.lock();
        let mut out = Vec::new();
        for g in all.values() {
            for i in &g.instances {
                if ids.is_empty() || ids.contains(&i.id) {
                    let mut t = g.template.clone();
                    t.version = i.template_version.clone();
                    out.push((g.name.clone(), t, i.clone()));
                }
            }
        }
        out.sort_by(|a, b| a.2.id.cmp(&b.2.id));
        out
    }

    /// Runs `f` on a group (controller bookkeeping).
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&mut Group) -> R) -> Option<R> {
        self.lock().get_mut(name).map(f)
    }
}

impl AsError {
    /// `SetDesiredCapacity` words its two bounds differently.
    fn with_max(self, desired: u32, max: u32) -> AsError {
        if desired > max {
            AsError::validation(format!(
                "New SetDesiredCapacity value {desired} is above max value {max} for the AutoScalingGroup."
            ))
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Groups {
        let g = Groups::default();
        g.insert(Group {
            name: "ng".into(),
            arn: "arn".into(),
            template: TemplateSpec {
                id: "lt-1".into(),
                name: "ng".into(),
                version: "1".into(),
            },
            min: 1,
            max: 4,
            desired: 2,
            subnets: vec!["subnet-a".into()],
            zones: vec!["z1".into()],
            instances: ["i-1", "i-2"]
                .iter()
                .map(|id| Instance {
                    id: id.to_string(),
                    instance_type: "m5.large".into(),
                    zone: "z1".into(),
                    lifecycle: Lifecycle::InService,
                    template_version: "1".into(),
                    node: format!("node-{id}"),
                })
                .collect(),
            tags: vec![],
            created: "2024-01-01T00:00:00Z".into(),
        });
        g
    }

    #[test]
    fn desired_capacity_stays_within_the_bounds() {
        let g = group();
        let e = g
            .update(
                "ng",
                Update {
                    desired: Some(5),
                    ..Update::default()
                },
            )
            .unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(
            e.message.contains("Desired capacity:5 must be between"),
            "{}",
            e.message
        );
        // A new MaxSize below the desired capacity lowers it.
        g.update(
            "ng",
            Update {
                max: Some(1),
                ..Update::default()
            },
        )
        .unwrap();
        assert_eq!(g.get("ng").unwrap().desired, 1);
        let e = g
            .update(
                "ng",
                Update {
                    min: Some(3),
                    ..Update::default()
                },
            )
            .unwrap_err();
        assert!(e.message.contains("Max bound, 1"), "{}", e.message);
        assert!(
            g.update("nope", Update::default())
                .unwrap_err()
                .message
                .contains("not found")
        );
        assert!(
            g.set_desired("ng", 9)
                .unwrap_err()
                .message
                .contains("above max value 1")
        );
    }

    #[test]
    fn terminating_without_decrement_keeps_the_desired_capacity() {
        let g = group();
        let a = g.terminate("i-1", false).unwrap();
        assert_eq!((a.group.as_str(), a.previous_desired), ("ng", 2));
        let now = g.get("ng").unwrap();
        assert_eq!(now.desired, 2);
        assert_eq!(now.live(), 1);
        // Asking again is answered the same way.
        g.terminate("i-1", false).unwrap();
        assert!(
            g.terminate("i-9", false)
                .unwrap_err()
                .message
                .contains("No managed instance found for instance ID: i-9")
        );
    }

    #[test]
    fn a_decrement_may_not_go_below_min_size() {
        let g = group();
        g.terminate("i-1", true).unwrap();
        assert_eq!(g.get("ng").unwrap().desired, 1);
        let e = g.terminate("i-2", true).unwrap_err();
        assert!(e.message.contains("desiredSize equals minSize (1)"), "{}", e.message);
    }
}
