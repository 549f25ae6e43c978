//! patch-security-groups: make every security group the plan names admit the
//! pod CIDR on its ports, before any pod can hold a pod-CIDR address. A rule
//! that already admits it (the same or a wider block) is left alone;
//! `InvalidPermission.Duplicate` means another writer got there first. The
//! rule ids go into the journal so a rollback can remove exactly these rules.

use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{Env, SgPatchInput, ids};
use crate::aws::ec2::{IngressRule, NewIngress, RuleSource, SecurityGroupInfo};
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};

pub struct PatchSecurityGroups {
    pub vpc_id: String,
    pub patches: Vec<SgPatchInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchedRule {
    pub group_id: String,
    pub group_name: String,
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Ipv4Net,
    /// Ids of the rules that admit it (`sgr-…`), when EC2 reports them.
    pub rule_ids: Vec<String>,
    /// podnet added the rule (false: the group admitted the pod CIDR on
    /// these ports before podnet's first attempt).
    pub created: bool,
}

/// The patches (by [`resource_name`]) whose group already admitted the pod
/// CIDR before the first attempt changed anything: what a later attempt
/// finds in place is podnet's own unless it is listed here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PatchSecurityGroupsCheckpoint {
    pub admitted_before: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PatchSecurityGroupsOutputs {
    pub rules: Vec<PatchedRule>,
}

/// The rules of `group` that already admit the patch (a block containing the
/// pod CIDR, covering the protocol and ports).
pub fn admitting<'a>(group: &'a SecurityGroupInfo, p: &SgPatchInput) -> Vec<&'a IngressRule> {
    group
        .ingress
        .iter()
        .filter(|r| matches!(&r.source, RuleSource::Cidr(c) if c.contains(&p.cidr)))
        .filter(|r| r.covers(&p.protocol, p.from_port, p.to_port))
        .collect()
}

/// The ids of the rules that admit the patch: for a rule podnet added, only
/// those exactly as it writes them (the pod CIDR, the protocol, the ports),
/// so that a rollback never revokes a wider rule someone else added.
fn rule_ids(group: &SecurityGroupInfo, p: &SgPatchInput, ours: bool) -> Vec<String> {
    admitting(group, p)
        .into_iter()
        .filter(|r| {
            !ours
                || (matches!(&r.source, RuleSource::Cidr(c) if *c == p.cidr)
                    && crate::aws::ec2::protocol_name(&r.protocol) == crate::aws::ec2::protocol_name(&p.protocol)
                    && r.from_port == p.from_port
                    && r.to_port == p.to_port)
        })
        .filter_map(|r| r.rule_id.clone())
        .collect()
}

fn group<'a>(groups: &'a [SecurityGroupInfo], p: &SgPatchInput) -> Result<&'a SecurityGroupInfo, StepError> {
    groups.iter().find(|g| g.id == p.group_id).ok_or_else(|| {
        StepError::new(
            ErrorClass::NotFound,
            format!("security group {} ({}) is gone", p.group_id, p.group_name),
        )
        .hint("fix security_group_patch in the plan file and run `podnet plan`")
    })
}

fn resource_name(p: &SgPatchInput) -> String {
    format!("{} ({}) {} from {}", p.group_id, p.group_name, p.ports_label(), p.cidr)
}

impl Produces for PatchSecurityGroups {
    type Output = PatchSecurityGroupsOutputs;
}

#[async_trait]
impl Unit<Env> for PatchSecurityGroups {
    type Checkpoint = PatchSecurityGroupsCheckpoint;

    fn id(&self) -> &str {
        ids::PATCH_SECURITY_GROUPS
    }

    fn describe(&self) -> String {
        format!("admit the pod CIDR in {} security group rule(s)", self.patches.len())
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(self.id(), self.describe());
        if self.patches.is_empty() {
            return Ok(plan.note("the plan file names no security group to patch"));
        }
        let groups = env.aws.ec2.describe_security_groups(&self.vpc_id).await?;
        for p in &self.patches {
            let g = group(&groups, p)?;
            let have = admitting(g, p);
            let change = if let Some(r) = have.first() {
                let why = match &r.source {
                    RuleSource::Cidr(c) if *c == p.cidr => "already admitted".to_string(),
                    RuleSource::Cidr(c) => format!("already admitted through {c}"),
                    _ => "already admitted".to_string(),
                };
                Change::new(Action::NoOp, "aws_security_group_rule", resource_name(p)).because(why)
            } else {
                Change::new(Action::Create, "aws_security_group_rule", resource_name(p))
                    .set("security_group_id", &p.group_id)
                    .set("protocol", &p.protocol)
                    .set("from_port", p.from_port)
                    .set("to_port", p.to_port)
                    .set("cidr_ipv4", p.cidr.to_string())
                    .set("description", &p.description)
                    .unknown("security_group_rule_id")
            };
            plan = plan.with(change);
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let mut out = PatchSecurityGroupsOutputs::default();
        if self.patches.is_empty() {
            return Ok(out);
        }
        let mut groups = env.aws.ec2.describe_security_groups(&self.vpc_id).await?;
        let before = ctx.once(
            |c| &mut c.admitted_before,
            || {
                self.patches
                    .iter()
                    .filter(|p| group(&groups, p).is_ok_and(|g| !admitting(g, p).is_empty()))
                    .map(resource_name)
                    .collect()
            },
        )?;
        let ours = |p: &SgPatchInput| !before.contains(&resource_name(p));
        let mut added_any = false;
        for p in &self.patches {
            let g = group(&groups, p)?;
            let have = rule_ids(g, p, ours(p));
            if !admitting(g, p).is_empty() {
                out.rules.push(rule(p, have, ours(p)));
                continue;
            }
            env.status(self.id(), &format!("authorizing {}", resource_name(p)));
            let ingress = NewIngress {
                protocol: p.protocol.clone(),
                from_port: p.from_port,
                to_port: p.to_port,
                cidr: p.cidr,
                description: p.description.clone(),
            };
            match env.aws.ec2.authorize_ingress(&p.group_id, &ingress).await {
                Ok(ids) => {
                    added_any = true;
                    out.rules.push(rule(p, ids, true));
                }
                // Someone (or an earlier, interrupted attempt) added it since we looked.
                Err(e) if e.is_code("InvalidPermission.Duplicate") => out.rules.push(rule(p, vec![], ours(p))),
                Err(e) => return Err(e.into()),
            }
        }
        // Fill in rule ids EC2 did not return with the answer.
        if added_any || out.rules.iter().any(|r| r.rule_ids.is_empty()) {
            groups = env.aws.ec2.describe_security_groups(&self.vpc_id).await?;
            for (r, p) in out.rules.iter_mut().zip(&self.patches) {
                if r.rule_ids.is_empty()
                    && let Ok(g) = group(&groups, p)
                {
                    r.rule_ids = rule_ids(g, p, r.created);
                }
            }
        }
        Ok(out)
    }
}

fn rule(p: &SgPatchInput, rule_ids: Vec<String>, created: bool) -> PatchedRule {
    PatchedRule {
        group_id: p.group_id.clone(),
        group_name: p.group_name.clone(),
        protocol: p.protocol.clone(),
        from_port: p.from_port,
        to_port: p.to_port,
        cidr: p.cidr,
        rule_ids,
        created,
    }
}
