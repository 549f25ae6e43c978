//! create-pod-subnets: one subnet per AZ inside the secondary CIDR, tagged
//! (`Name`, podnet's ownership tag, `kubernetes.io/role/cni=1`, the plan's
//! extras) and associated with the route table the node subnet of that AZ
//! uses — a new subnet would silently use the VPC's main table otherwise. On
//! a re-run, subnets are found again by VPC and CIDR and only what differs
//! (a tag, the association) is changed.

use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{Env, PodSubnetInput, ids};
use crate::aws::ec2::{RouteTableInfo, SubnetInfo, Tags};
use crate::engine::{Action, Change, ErrorClass, OutputOf, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::network::overlaps;

pub struct CreatePodSubnets {
    pub vpc_id: String,
    pub subnets: Vec<PodSubnetInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSubnet {
    pub availability_zone: String,
    pub cidr: Ipv4Net,
    pub subnet_id: String,
    pub route_table_id: String,
    /// The explicit association (none when the target is the main table and
    /// the subnet uses it implicitly).
    pub association_id: Option<String>,
    /// podnet created the subnet (false: it existed before the first
    /// attempt and was adopted). `None` in journals written before podnet
    /// recorded it.
    #[serde(default)]
    pub created: Option<bool>,
    /// An adopted subnet as it was before podnet tagged or associated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<FoundSubnet>,
}

/// A subnet that existed before podnet's first attempt, as it was then: what
/// a rollback puts back instead of deleting it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundSubnet {
    pub subnet_id: String,
    /// Its values for the tag keys podnet sets (a key it lacked is absent).
    pub tags: Tags,
    /// The route table it was explicitly associated with (none: it used
    /// the main table implicitly).
    pub route_table_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CreatePodSubnetsOutputs {
    pub subnets: Vec<PodSubnet>,
}

/// The planned subnets that existed before the first attempt, by CIDR,
/// recorded before anything is created or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct CreatePodSubnetsCheckpoint {
    pub found_before: Option<std::collections::BTreeMap<String, FoundSubnet>>,
}

impl CreatePodSubnets {
    fn found_before(
        &self,
        subnets: &[SubnetInfo],
        rts: &[RouteTableInfo],
    ) -> std::collections::BTreeMap<String, FoundSubnet> {
        self.subnets
            .iter()
            .filter_map(|want| {
                let s = subnets.iter().find(|s| s.cidr == want.cidr)?;
                let tags = s
                    .tags
                    .iter()
                    .filter(|(k, _)| want.tags.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let route_table_id = rts
                    .iter()
                    .find(|rt| rt.association_for(&s.id).is_some())
                    .map(|rt| rt.id.clone());
                Some((
                    want.cidr.to_string(),
                    FoundSubnet {
                        subnet_id: s.id.clone(),
                        tags,
                        route_table_id,
                    },
                ))
            })
            .collect()
    }
}

/// Where one subnet stands.
enum Found<'a> {
    Missing,
    Present(&'a SubnetInfo),
}

fn find<'a>(subnets: &'a [SubnetInfo], want: &PodSubnetInput) -> Result<Found<'a>, StepError> {
    if let Some(s) = subnets.iter().find(|s| s.cidr == want.cidr) {
        if s.availability_zone != want.availability_zone {
            return Err(StepError::new(
                ErrorClass::Conflict,
                format!(
                    "{} already exists as {} in {}, not {}",
                    want.cidr, s.id, s.availability_zone, want.availability_zone
                ),
            )
            .hint("give that AZ another block in the plan file, or remove the existing subnet"));
        }
        return Ok(Found::Present(s));
    }
    if let Some(s) = subnets.iter().find(|s| overlaps(&s.cidr, &want.cidr)) {
        return Err(StepError::new(
            ErrorClass::Conflict,
            format!("{} overlaps the existing subnet {} ({})", want.cidr, s.id, s.cidr),
        )
        .hint("choose pod subnet blocks that no existing subnet uses"));
    }
    Ok(Found::Missing)
}

fn missing_tags(have: &Tags, want: &Tags) -> Tags {
    want.iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The route-table situation of an existing subnet.
enum Assoc {
    /// Explicitly associated with the wanted table.
    Ok(String),
    /// Implicitly on the main table, which is the wanted one.
    ImplicitMain,
    /// Explicitly on another table: (association id, that table).
    Elsewhere(String, String),
    /// Implicitly on the main table, but another table is wanted.
    NeedsAssociation,
}

fn association(rts: &[RouteTableInfo], subnet_id: &str, want_rt: &str) -> Assoc {
    for rt in rts {
        if let Some(a) = rt.association_for(subnet_id) {
            return if rt.id == want_rt {
                Assoc::Ok(a.id.clone())
            } else {
                Assoc::Elsewhere(a.id.clone(), rt.id.clone())
            };
        }
    }
    if rts.iter().any(|rt| rt.id == want_rt && rt.is_main()) {
        Assoc::ImplicitMain
    } else {
        Assoc::NeedsAssociation
    }
}

/// Where apply-eniconfigs reads the subnets' ids.
pub const OUTPUT: OutputOf<CreatePodSubnets> = OutputOf::new(ids::CREATE_POD_SUBNETS);

impl Produces for CreatePodSubnets {
    type Output = CreatePodSubnetsOutputs;
}

#[async_trait]
impl Unit<Env> for CreatePodSubnets {
    type Checkpoint = CreatePodSubnetsCheckpoint;

    fn id(&self) -> &str {
        ids::CREATE_POD_SUBNETS
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .subnets
            .iter()
            .map(|s| format!("{} in {}", s.cidr, s.availability_zone))
            .collect();
        format!("create pod subnets {}", parts.join(", "))
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let (subnets, rts) = tokio::try_join!(
            env.aws.ec2.describe_subnets(&self.vpc_id),
            env.aws.ec2.describe_route_tables(&self.vpc_id)
        )?;
        let mut plan = StepPlan::new(self.id(), self.describe());
        for want in &self.subnets {
            let label = format!("{} ({})", want.name, want.availability_zone);
            match find(&subnets, want)? {
                Found::Missing => {
                    let mut c = Change::new(Action::Create, "aws_subnet", &label)
                        .set("vpc_id", &self.vpc_id)
                        .set("availability_zone", &want.availability_zone)
                        .set("cidr_block", want.cidr.to_string())
                        .unknown("id");
                    for (k, v) in &want.tags {
                        c = c.set(format!("tags.{k}"), v);
                    }
                    plan = plan.with(c).with(
                        Change::new(Action::Create, "aws_route_table_association", &label)
                            .unknown("subnet_id")
                            .set("route_table_id", &want.route_table_id),
                    );
                }
                Found::Present(s) => {
                    let missing = missing_tags(&s.tags, &want.tags);
                    if missing.is_empty() {
                        plan = plan.with(
                            Change::new(Action::NoOp, "aws_subnet", format!("{label} {}", s.id)).because("exists"),
                        );
                    } else {
                        let mut c = Change::new(Action::Update, "aws_subnet", format!("{label} {}", s.id));
                        for (k, v) in &missing {
                            c = c.change(format!("tags.{k}"), s.tags.get(k), v);
                        }
                        plan = plan.with(c);
                    }
                    let name = format!("{label} {}", s.id);
                    plan = plan.with(match association(&rts, &s.id, &want.route_table_id) {
                        Assoc::Ok(_) | Assoc::ImplicitMain => {
                            Change::new(Action::NoOp, "aws_route_table_association", name)
                                .because(format!("uses {}", want.route_table_id))
                        }
                        Assoc::Elsewhere(_, other) => Change::new(Action::Update, "aws_route_table_association", name)
                            .change("route_table_id", other, &want.route_table_id),
                        Assoc::NeedsAssociation => Change::new(Action::Create, "aws_route_table_association", name)
                            .set("subnet_id", &s.id)
                            .set("route_table_id", &want.route_table_id),
                    });
                }
            }
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let (mut subnets, rts) = tokio::try_join!(
            env.aws.ec2.describe_subnets(&self.vpc_id),
            env.aws.ec2.describe_route_tables(&self.vpc_id)
        )?;
        let found_before = ctx.once(|c| &mut c.found_before, || self.found_before(&subnets, &rts))?;
        let mut out = CreatePodSubnetsOutputs::default();
        for want in &self.subnets {
            let subnet = match find(&subnets, want)? {
                Found::Present(s) => {
                    let missing = missing_tags(&s.tags, &want.tags);
                    if !missing.is_empty() {
                        env.status(self.id(), &format!("tagging {}", s.id));
                        env.once_visible(|| env.aws.ec2.create_tags(&s.id, &missing)).await?;
                    }
                    s.clone()
                }
                Found::Missing => {
                    env.status(
                        self.id(),
                        &format!("creating {} in {}", want.cidr, want.availability_zone),
                    );
                    match env
                        .aws
                        .ec2
                        .create_subnet(&self.vpc_id, &want.availability_zone, want.cidr, &want.tags)
                        .await
                    {
                        Ok(s) => s,
                        // Created by an attempt whose answer was lost: find
                        // it again, once EC2 lists it.
                        Err(e) if e.is_code("InvalidSubnet.Conflict") => {
                            let deadline = tokio::time::Instant::now() + env.waits.propagation;
                            loop {
                                subnets = env.aws.ec2.describe_subnets(&self.vpc_id).await?;
                                if let Found::Present(s) = find(&subnets, want)? {
                                    break s.clone();
                                }
                                if tokio::time::Instant::now() >= deadline {
                                    return Err(e.into());
                                }
                                tokio::time::sleep(env.waits.poll).await;
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let association_id = match association(&rts, &subnet.id, &want.route_table_id) {
                Assoc::Ok(id) => Some(id),
                Assoc::ImplicitMain => None,
                Assoc::Elsewhere(assoc, _) => {
                    env.status(self.id(), &format!("moving {} to {}", subnet.id, want.route_table_id));
                    Some(
                        env.once_visible(|| {
                            env.aws
                                .ec2
                                .replace_route_table_association(&assoc, &want.route_table_id)
                        })
                        .await?,
                    )
                }
                Assoc::NeedsAssociation => {
                    env.status(
                        self.id(),
                        &format!("associating {} with {}", subnet.id, want.route_table_id),
                    );
                    match env
                        .once_visible(|| env.aws.ec2.associate_route_table(&want.route_table_id, &subnet.id))
                        .await
                    {
                        Ok(id) => Some(id),
                        Err(e) if e.is_code("Resource.AlreadyAssociated") => {
                            let rts = env.aws.ec2.describe_route_tables(&self.vpc_id).await?;
                            match association(&rts, &subnet.id, &want.route_table_id) {
                                Assoc::Ok(id) => Some(id),
                                _ => return Err(e.into()),
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            out.subnets.push(PodSubnet {
                availability_zone: want.availability_zone.clone(),
                cidr: want.cidr,
                subnet_id: subnet.id.clone(),
                route_table_id: want.route_table_id.clone(),
                association_id,
                created: Some(!found_before.contains_key(&want.cidr.to_string())),
                found: found_before.get(&want.cidr.to_string()).cloned(),
            });
        }
        Ok(out)
    }
}
