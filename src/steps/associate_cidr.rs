//! associate-cidr: give the VPC the secondary CIDR block and wait (bounded)
//! until it is `associated`. An existing association of the same block is
//! adopted; an overlapping different one, or any association rule AWS would
//! refuse, stops the step before it calls AWS.

use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Env, ids};
use crate::aws::ec2::{CidrAssociation, RouteTableInfo, VpcInfo};
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::network::{CidrProblem, RouteDestination, VpcCidrs, check_secondary_cidr, overlaps};

pub struct AssociateCidr {
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    pub quota: usize,
}

/// What later steps read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociateCidrOutputs {
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    pub association_id: String,
    /// podnet made the association (false: it was there before the first
    /// attempt). `None` in journals written before podnet recorded it.
    #[serde(default)]
    pub created: Option<bool>,
}

/// The AWS association rules for `cidr` against the VPC as it is now.
pub fn problems(vpc: &VpcInfo, route_tables: &[RouteTableInfo], cidr: Ipv4Net, quota: usize) -> Vec<CidrProblem> {
    let vpc_cidrs = VpcCidrs {
        primary: vpc.primary_cidr,
        associated: vpc.live_cidrs(),
    };
    let routes: Vec<RouteDestination> = route_tables
        .iter()
        .flat_map(|rt| {
            rt.routes.iter().filter_map(|r| {
                Some(RouteDestination {
                    route_table_id: rt.id.clone(),
                    destination: r.destination?,
                    target: r.target.clone(),
                })
            })
        })
        .collect();
    check_secondary_cidr(cidr, &vpc_cidrs, &routes, quota).problems
}

impl AssociateCidr {
    fn existing<'a>(&self, vpc: &'a VpcInfo) -> Option<&'a CidrAssociation> {
        vpc.cidr_associations
            .iter()
            .find(|a| a.cidr == self.cidr && a.is_live())
    }

    fn conflict(&self, vpc: &VpcInfo) -> Option<StepError> {
        let other = vpc
            .cidr_associations
            .iter()
            .find(|a| a.is_live() && a.cidr != self.cidr && overlaps(&a.cidr, &self.cidr))?;
        Some(
            StepError::new(
                ErrorClass::Conflict,
                format!(
                    "{} already has {} ({}), which overlaps {}",
                    self.vpc_id, other.cidr, other.association_id, self.cidr
                ),
            )
            .hint("use that block as network.secondary_cidr, or choose a block that does not overlap it"),
        )
    }
}

/// What an interrupted attempt leaves: whether the block was associated
/// before podnet's first attempt (recorded before any call that changes
/// anything, so a later attempt cannot mistake podnet's own association for
/// one it found), and the association it created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AssociateCidrCheckpoint {
    pub association_id: Option<String>,
    pub found_before: Option<bool>,
}

impl Produces for AssociateCidr {
    type Output = AssociateCidrOutputs;
}

#[async_trait]
impl Unit<Env> for AssociateCidr {
    type Checkpoint = AssociateCidrCheckpoint;

    fn id(&self) -> &str {
        ids::ASSOCIATE_CIDR
    }

    fn describe(&self) -> String {
        format!("associate {} with {}", self.cidr, self.vpc_id)
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let vpc = env.aws.ec2.describe_vpc(&self.vpc_id).await?;
        let plan = StepPlan::new(self.id(), self.describe());
        let name = format!("{} on {}", self.cidr, self.vpc_id);
        if let Some(a) = self.existing(&vpc) {
            return Ok(plan.with(
                Change::new(Action::NoOp, "aws_vpc_ipv4_cidr_block_association", name)
                    .because(format!("already {} as {}", a.state, a.association_id)),
            ));
        }
        if let Some(e) = self.conflict(&vpc) {
            return Err(e);
        }
        Ok(plan.with(
            Change::new(Action::Create, "aws_vpc_ipv4_cidr_block_association", name)
                .set("vpc_id", &self.vpc_id)
                .set("cidr_block", self.cidr.to_string())
                .unknown("association_id"),
        ))
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let vpc = env.aws.ec2.describe_vpc(&self.vpc_id).await?;
        let found_before = ctx.once(|c| &mut c.found_before, || self.existing(&vpc).is_some())?;
        let association = match self.existing(&vpc) {
            Some(a) => a.clone(),
            None => {
                if let Some(e) = self.conflict(&vpc) {
                    return Err(e);
                }
                // The rules again, against the VPC as it is now: a plan can be
                // old, and AWS's emulators accept what AWS refuses.
                let rts = env.aws.ec2.describe_route_tables(&self.vpc_id).await?;
                let problems = problems(&vpc, &rts, self.cidr, self.quota);
                if !problems.is_empty() {
                    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                    return Err(StepError::new(ErrorClass::Invalid, text.join("; "))
                        .hint("change network.secondary_cidr in the plan file and run `podnet plan`"));
                }
                env.status(self.id(), &format!("associating {} with {}", self.cidr, self.vpc_id));
                let a = env.aws.ec2.associate_vpc_cidr_block(&self.vpc_id, self.cidr).await?;
                // Recorded before the wait: a resumed attempt finds the
                // association by CIDR anyway, but the journal then says which
                // association this run created (for a later rollback).
                ctx.save(|c| c.association_id = Some(a.association_id.clone()))?;
                a
            }
        };
        let association = self.wait_associated(env, association).await?;
        let out = AssociateCidrOutputs {
            vpc_id: self.vpc_id.clone(),
            cidr: self.cidr,
            // podnet's when the block was not there before the first attempt
            // and no other association than the one podnet recorded holds it.
            created: Some(
                !found_before
                    && ctx
                        .checkpoint()
                        .association_id
                        .as_ref()
                        .is_none_or(|id| *id == association.association_id),
            ),
            association_id: association.association_id,
        };
        Ok(out)
    }
}

impl AssociateCidr {
    async fn wait_associated(&self, env: &Env, mut a: CidrAssociation) -> Result<CidrAssociation, StepError> {
        let deadline = Instant::now() + env.waits.cidr_association;
        loop {
            match a.state.as_str() {
                "associated" => return Ok(a),
                "failing" | "failed" | "disassociating" | "disassociated" => {
                    return Err(StepError::new(
                        ErrorClass::Failed,
                        format!("the association {} of {} is {}", a.association_id, self.cidr, a.state),
                    )
                    .hint("see the VPC's CIDR blocks in the console for the reason; fix it and run `podnet resume`"));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(StepError::new(
                    ErrorClass::Timeout,
                    format!(
                        "{} on {} is still {} after {}s",
                        self.cidr,
                        self.vpc_id,
                        a.state,
                        env.waits.cidr_association.as_secs()
                    ),
                )
                .hint("AWS is slow to associate; run `podnet resume` to keep waiting"));
            }
            env.status(
                self.id(),
                &format!("waiting for {} to be associated ({})", self.cidr, a.state),
            );
            tokio::time::sleep(env.waits.poll).await;
            let vpc = env.aws.ec2.describe_vpc(&self.vpc_id).await?;
            a = vpc
                .cidr_associations
                .into_iter()
                .find(|x| x.association_id == a.association_id)
                .ok_or_else(|| StepError::failed(format!("the association of {} disappeared", self.cidr)))?;
        }
    }
}
