//! Who these AWS credentials are and what IAM lets them do where the API
//! itself cannot be asked: `sts:GetCallerIdentity` for the principal, and
//! IAM's policy simulator (`iam:SimulatePrincipalPolicy`) for actions with
//! no `DryRun` — every EKS write and EC2's `AssociateVpcCidrBlock`. The
//! simulator evaluates the principal's identity-based policies (not SCPs or
//! permission boundaries set elsewhere), so a simulated "allowed" is strong
//! evidence, not proof; a denial is what the call would meet.

use async_trait::async_trait;

use super::AwsError;
use super::error::from_sdk;

/// The principal behind the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// As STS names it (`arn:aws:sts::…:assumed-role/ROLE/SESSION` for a
    /// role session).
    pub arn: String,
    pub account: String,
}

impl Caller {
    /// `aws`, `aws-cn`, `aws-us-gov`: from the ARN.
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or("aws")
    }

    /// The ARN IAM's simulator takes for this principal: a user is itself;
    /// a role session is its role (`arn:…:iam::ACCOUNT:role/NAME` — a role
    /// with a path is not found under it, and the check is then skipped).
    /// `None` for the account root and federated users, which IAM cannot
    /// simulate.
    pub fn policy_source(&self) -> Option<String> {
        let (prefix, resource) = self
            .arn
            .split_once(":iam::")
            .or_else(|| self.arn.split_once(":sts::"))?;
        let (account, what) = resource.split_once(':')?;
        if let Some(user) = what.strip_prefix("user/") {
            return Some(format!("{prefix}:iam::{account}:user/{user}"));
        }
        if let Some(session) = what.strip_prefix("assumed-role/") {
            let role = session.split('/').next()?;
            return Some(format!("{prefix}:iam::{account}:role/{role}"));
        }
        what.strip_prefix("role/")
            .map(|role| format!("{prefix}:iam::{account}:role/{role}"))
    }
}

/// One action to ask about, on these resources (none: `*`), with the
/// condition keys the real call would carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// `eks:UpdateAddon`.
    pub action: String,
    pub resources: Vec<String>,
    pub context: Vec<(String, String)>,
}

/// The simulator's answer for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Simulated {
    Allowed,
    /// `implicitDeny` or `explicitDeny`, and the resources it holds for.
    Denied {
        explicit: bool,
        resources: Vec<String>,
    },
}

#[async_trait]
pub trait AccessApi: Send + Sync {
    async fn caller(&self) -> Result<Caller, AwsError>;
    async fn simulate(&self, policy_source: &str, ask: &Ask) -> Result<Simulated, AwsError>;
}

pub struct SdkAccess {
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
}

impl SdkAccess {
    pub fn new(cfg: &aws_config::SdkConfig) -> SdkAccess {
        SdkAccess {
            sts: aws_sdk_sts::Client::new(cfg),
            iam: aws_sdk_iam::Client::new(cfg),
        }
    }
}

fn denied(decision: &aws_sdk_iam::types::PolicyEvaluationDecisionType) -> Option<bool> {
    use aws_sdk_iam::types::PolicyEvaluationDecisionType as D;
    match decision {
        D::Allowed => None,
        D::ExplicitDeny => Some(true),
        _ => Some(false),
    }
}

#[async_trait]
impl AccessApi for SdkAccess {
    async fn caller(&self) -> Result<Caller, AwsError> {
        // Not an `…OP` constant: sts:GetCallerIdentity needs no permission
        // ("No permissions are required", STS API Reference), so it is not
        // in the policy table.
        const IDENTITY: &str = "GetCallerIdentity";
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| from_sdk("sts", IDENTITY, None, e))?;
        Ok(Caller {
            arn: out.arn().unwrap_or_default().to_string(),
            account: out.account().unwrap_or_default().to_string(),
        })
    }

    async fn simulate(&self, policy_source: &str, ask: &Ask) -> Result<Simulated, AwsError> {
        use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum};
        const OP: &str = "SimulatePrincipalPolicy";
        let mut req = self
            .iam
            .simulate_principal_policy()
            .policy_source_arn(policy_source)
            .action_names(&ask.action);
        for r in &ask.resources {
            req = req.resource_arns(r);
        }
        for (k, v) in &ask.context {
            req = req.context_entries(
                ContextEntry::builder()
                    .context_key_name(k)
                    .context_key_values(v)
                    .context_key_type(ContextKeyTypeEnum::String)
                    .build(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| from_sdk("iam", OP, Some(policy_source.to_string()), e))?;
        // One result per action today, one per resource before (IAM API
        // Reference, EvaluationResult): read every result for the action.
        let results: Vec<_> = out
            .evaluation_results()
            .iter()
            .filter(|r| r.eval_action_name().eq_ignore_ascii_case(&ask.action))
            .collect();
        if results.is_empty() {
            return Err(AwsError {
                class: crate::error_class::ErrorClass::Failed,
                service: "iam",
                operation: OP,
                resource: Some(policy_source.to_string()),
                code: None,
                message: format!("the simulator did not answer for {}", ask.action),
                status: None,
            });
        }
        let (mut any_denied, mut explicit) = (false, false);
        let mut resources: Vec<String> = vec![];
        for result in results {
            let Some(this_explicit) = denied(result.eval_decision()) else {
                continue;
            };
            any_denied = true;
            explicit |= this_explicit;
            let specific: Vec<String> = result
                .resource_specific_results()
                .iter()
                .filter(|r| denied(r.eval_resource_decision()).is_some())
                .map(|r| r.eval_resource_name().to_string())
                .collect();
            if specific.is_empty() {
                resources.extend(result.eval_resource_name().map(str::to_string));
            } else {
                resources.extend(specific);
            }
        }
        if !any_denied {
            return Ok(Simulated::Allowed);
        }
        resources.dedup();
        Ok(Simulated::Denied { explicit, resources })
    }
}

/// An in-memory caller and simulator for contract tests: the caller is a
/// user, and every action in `denied` is implicitly denied.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FakeAccess {
    pub denied: Vec<String>,
    /// What was asked, in order.
    pub asked: std::sync::Mutex<Vec<Ask>>,
}

#[cfg(test)]
#[async_trait]
impl AccessApi for FakeAccess {
    async fn caller(&self) -> Result<Caller, AwsError> {
        Ok(Caller {
            arn: "arn:aws:iam::123456789012:user/podnet".into(),
            account: "123456789012".into(),
        })
    }

    async fn simulate(&self, _: &str, ask: &Ask) -> Result<Simulated, AwsError> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).push(ask.clone());
        Ok(if self.denied.contains(&ask.action) {
            Simulated::Denied {
                explicit: false,
                resources: ask.resources.clone(),
            }
        } else {
            Simulated::Allowed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(arn: &str) -> Caller {
        Caller {
            arn: arn.into(),
            account: "123456789012".into(),
        }
    }

    #[test]
    fn the_simulator_is_asked_about_the_user_or_the_sessions_role() {
        assert_eq!(
            caller("arn:aws:iam::123456789012:user/ops/alice")
                .policy_source()
                .as_deref(),
            Some("arn:aws:iam::123456789012:user/ops/alice")
        );
        assert_eq!(
            caller("arn:aws:sts::123456789012:assumed-role/podnet-migrator/ci-42")
                .policy_source()
                .as_deref(),
            Some("arn:aws:iam::123456789012:role/podnet-migrator")
        );
        assert_eq!(
            caller("arn:aws-cn:sts::123456789012:assumed-role/r/s")
                .policy_source()
                .as_deref(),
            Some("arn:aws-cn:iam::123456789012:role/r")
        );
        assert_eq!(caller("arn:aws:iam::123456789012:root").policy_source(), None);
        assert_eq!(
            caller("arn:aws:sts::123456789012:federated-user/bob").policy_source(),
            None
        );
        assert_eq!(caller("arn:aws-cn:sts::1:assumed-role/r/s").partition(), "aws-cn");
    }
}
