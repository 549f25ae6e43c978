//! What a rollback removes from EC2, after the nodes have left custom
//! networking and podnet's ENIConfigs are gone (`super::eniconfigs`): the
//! VPC CNI's detached ENIs left in the pod subnets, the ingress rules podnet added
//! (by rule id), the pod subnets it created (adopted ones put back), then
//! the CIDR association. Each unit re-reads what is there and acts only on
//! what is left, so a resumed or repeated rollback makes no call for what
//! is already gone; nothing without podnet's mark in the journal (or its
//! ownership tag) is ever deleted.

use std::time::Duration;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::plan::ids;
use crate::aws::ec2::{NetworkInterfaceInfo, RouteTableInfo, Tags};
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::spec::OWNER_TAG;
use crate::steps::Env;
use crate::steps::associate_cidr::AssociateCidrOutputs;
use crate::steps::pod_subnets::PodSubnet;
use crate::steps::security_groups::PatchedRule;

/// What a removal unit did: the resources it removed or put back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<String>,
}

/// delete-pod-subnet-enis: the ENIs the VPC CNI left behind in the pod
/// subnets podnet created. EC2 refuses to delete a subnet that still holds
/// an interface (`DependencyViolation`), and a node terminated while its
/// CNI was running can leave one detached.
pub struct DeletePodEnis {
    pub cluster: String,
    /// The pod subnets podnet created (adopted ones are kept).
    pub subnet_ids: Vec<String>,
}

/// What the ENIs in the pod subnets are: the CNI's detached ones (to
/// delete), the CNI's still attached (a node not yet gone), and others.
fn sort_enis(
    cluster: &str,
    all: Vec<NetworkInterfaceInfo>,
) -> (Vec<NetworkInterfaceInfo>, usize, Vec<NetworkInterfaceInfo>) {
    let mut leftover = vec![];
    let mut attached = 0;
    let mut foreign = vec![];
    for e in all {
        if e.is_detached_cni_eni(cluster) {
            leftover.push(e);
        } else if e.description.starts_with(crate::aws::ec2::CNI_ENI_DESCRIPTION_PREFIX) && e.attached_to.is_some() {
            attached += 1;
        } else {
            foreign.push(e);
        }
    }
    (leftover, attached, foreign)
}

fn foreign_enis(foreign: &[NetworkInterfaceInfo]) -> StepError {
    let list: Vec<String> = foreign
        .iter()
        .map(|e| format!("{} in {} ({}, \"{}\")", e.id, e.subnet_id, e.status, e.description))
        .collect();
    StepError::new(
        ErrorClass::Blocked,
        format!(
            "the pod subnets hold network interfaces the VPC CNI did not leave behind: {}; podnet will not delete them",
            list.join(", ")
        ),
    )
    .hint("move or delete what uses them (a load balancer, an endpoint, a pod on a node still there), then run `podnet rollback` again")
}

impl Produces for DeletePodEnis {
    type Output = Removed;
}

#[async_trait]
impl Unit<Env> for DeletePodEnis {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::DELETE_POD_ENIS
    }

    fn describe(&self) -> String {
        "delete the VPC CNI's detached ENIs left in the pod subnets".into()
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(self.id(), self.describe());
        let all = env.aws.ec2.describe_network_interfaces(&self.subnet_ids).await?;
        let (leftover, attached, foreign) = sort_enis(&self.cluster, all);
        for e in &leftover {
            plan =
                plan.with(Change::new(Action::Delete, "aws_network_interface", &e.id).set("subnet_id", &e.subnet_id));
        }
        if attached > 0 {
            plan = plan.note(format!(
                "{attached} ENI(s) are still attached to nodes that the replacement removes"
            ));
        }
        if !foreign.is_empty() {
            plan = plan.note(foreign_enis(&foreign).to_string());
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<Removed, StepError> {
        let deadline = Instant::now() + env.waits.propagation.max(Duration::from_secs(60));
        let mut out = Removed::default();
        loop {
            let all = env.aws.ec2.describe_network_interfaces(&self.subnet_ids).await?;
            let (leftover, attached, foreign) = sort_enis(&self.cluster, all);
            if !foreign.is_empty() {
                return Err(foreign_enis(&foreign));
            }
            for e in leftover {
                env.status(self.id(), &format!("deleting {} ({})", e.id, e.description));
                match env.aws.ec2.delete_network_interface(&e.id).await {
                    Ok(()) => out.removed.push(e.id),
                    Err(err) if err.code.as_deref() == Some("InvalidNetworkInterfaceID.NotFound") => {}
                    Err(err) => return Err(err.into()),
                }
            }
            if attached == 0 {
                return Ok(out);
            }
            // Instances of replaced nodes detach their ENIs as they terminate.
            if Instant::now() >= deadline {
                return Err(StepError::new(
                    ErrorClass::Blocked,
                    format!("{attached} VPC CNI ENI(s) in the pod subnets are still attached to instances"),
                )
                .hint("a node still runs on custom networking: check `kubectl get nodes -L vpc.amazonaws.com/eniConfig`, then run `podnet rollback` again"));
            }
            env.status(
                self.id(),
                &format!("waiting for {attached} attached ENI(s) to be released"),
            );
            tokio::time::sleep(env.waits.poll).await;
        }
    }
}

/// revoke-security-group-rules: only the rules podnet added, by rule id.
pub struct RevokeRules {
    pub vpc_id: String,
    pub rules: Vec<PatchedRule>,
}

impl RevokeRules {
    /// Per group, the recorded rule ids that still exist.
    async fn left(&self, env: &Env) -> Result<Vec<(String, Vec<String>)>, StepError> {
        let groups = env.aws.ec2.describe_security_groups(&self.vpc_id).await?;
        let mut out: Vec<(String, Vec<String>)> = vec![];
        for r in self.rules.iter().filter(|r| r.created) {
            let Some(g) = groups.iter().find(|g| g.id == r.group_id) else {
                continue;
            };
            let live: Vec<String> = r
                .rule_ids
                .iter()
                .filter(|id| g.ingress.iter().any(|i| i.rule_id.as_ref() == Some(*id)))
                .cloned()
                .collect();
            if live.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(gid, _)| gid == &r.group_id) {
                Some((_, ids)) => ids.extend(live),
                None => out.push((r.group_id.clone(), live)),
            }
        }
        Ok(out)
    }
}

impl Produces for RevokeRules {
    type Output = Removed;
}

#[async_trait]
impl Unit<Env> for RevokeRules {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::REVOKE_RULES
    }

    fn describe(&self) -> String {
        "revoke the ingress rules podnet added".into()
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(self.id(), self.describe());
        for (g, rule_ids) in self.left(env).await? {
            plan = plan.with(
                Change::new(Action::Delete, "aws_security_group_rule", g).set("security_group_rule_id", rule_ids),
            );
        }
        let kept = self.rules.iter().filter(|r| !r.created).count();
        if kept > 0 {
            plan = plan.note(format!("{kept} rule(s) were there before the apply and stay"));
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<Removed, StepError> {
        let mut out = Removed::default();
        for (g, rule_ids) in self.left(env).await? {
            // One rule a call: EC2 refuses the whole call when one id is
            // gone, so a rule revoked meanwhile must not hide the others.
            for id in rule_ids {
                env.status(self.id(), &format!("revoking {id} from {g}"));
                match env.aws.ec2.revoke_ingress(&g, std::slice::from_ref(&id)).await {
                    Ok(()) => out.removed.push(id),
                    // Revoked between the read and the call (a concurrent run).
                    Err(e) if e.code.as_deref() == Some("InvalidSecurityGroupRuleId.NotFound") => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }
}

/// remove-pod-subnets: the subnets podnet created are deleted (only while
/// they carry its ownership tag); adopted ones get their tags and route
/// table back.
pub struct RemovePodSubnets {
    pub vpc_id: String,
    pub subnets: Vec<PodSubnet>,
}

/// The tag keys podnet added to an adopted subnet (to delete) and the
/// values it overwrote (to put back).
fn tag_restore(now: &Tags, podnet_keys: &[String], found: &Tags) -> (Vec<String>, Tags) {
    let delete = podnet_keys
        .iter()
        .filter(|k| now.contains_key(*k) && !found.contains_key(*k))
        .cloned()
        .collect();
    let put = found
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (delete, put)
}

impl Produces for RemovePodSubnets {
    type Output = Removed;
}

#[async_trait]
impl Unit<Env> for RemovePodSubnets {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::REMOVE_POD_SUBNETS
    }

    fn describe(&self) -> String {
        "delete the pod subnets podnet created (adopted ones put back)".into()
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let live = env.aws.ec2.describe_subnets(&self.vpc_id).await?;
        let tables = env.aws.ec2.describe_route_tables(&self.vpc_id).await?;
        let mut plan = StepPlan::new(self.id(), self.describe());
        for s in &self.subnets {
            let name = format!("{} ({} in {})", s.subnet_id, s.cidr, s.availability_zone);
            let Some(l) = live.iter().find(|l| l.id == s.subnet_id) else {
                plan = plan.with(Change::new(Action::NoOp, "aws_subnet", name).because("already gone"));
                continue;
            };
            plan = plan.with(match &s.found {
                None => Change::new(Action::Delete, "aws_subnet", name),
                Some(f) => {
                    let (delete, put) = tag_restore(&l.tags, &podnet_keys(s, l), &f.tags);
                    let moved = route_back(&tables, &l.id, f.route_table_id.as_deref());
                    if delete.is_empty() && put.is_empty() && moved.is_none() {
                        Change::new(Action::NoOp, "aws_subnet", name).because("as the apply found it")
                    } else {
                        let mut c = Change::new(Action::Update, "aws_subnet", name);
                        if !delete.is_empty() {
                            c = c.change("tags (removed)", &delete, None::<String>);
                        }
                        if !put.is_empty() {
                            c = c.change("tags (put back)", None::<String>, &put);
                        }
                        if moved.is_some() {
                            c = c.change(
                                "route_table_id",
                                table_of(&tables, &l.id),
                                f.route_table_id.as_deref().unwrap_or("the main table"),
                            );
                        }
                        c
                    }
                }
            });
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<Removed, StepError> {
        let live = env.aws.ec2.describe_subnets(&self.vpc_id).await?;
        let tables = env.aws.ec2.describe_route_tables(&self.vpc_id).await?;
        let mut out = Removed::default();
        for s in &self.subnets {
            let Some(l) = live.iter().find(|l| l.id == s.subnet_id) else {
                continue;
            };
            match &s.found {
                None => {
                    if !l.tags.contains_key(OWNER_TAG) {
                        return Err(StepError::new(
                            ErrorClass::Blocked,
                            format!("{} ({}) no longer carries podnet's {OWNER_TAG} tag: someone took it over", l.id, l.cidr),
                        )
                        .hint(format!("tag it {OWNER_TAG} again to let podnet delete it, or delete it by hand; then run `podnet rollback` again")));
                    }
                    env.status(self.id(), &format!("deleting {} ({})", l.id, l.cidr));
                    match env.aws.ec2.delete_subnet(&l.id).await {
                        Ok(()) => out.removed.push(l.id.clone()),
                        Err(e) if e.code.as_deref() == Some("InvalidSubnetID.NotFound") => {}
                        Err(e) if e.code.as_deref() == Some("DependencyViolation") => {
                            return Err(StepError::new(
                                ErrorClass::Blocked,
                                format!("EC2 will not delete {} ({}): something still uses it ({e})", l.id, l.cidr),
                            )
                            .hint(format!("find it with `aws ec2 describe-network-interfaces --filters Name=subnet-id,Values={}`, remove it, then run `podnet rollback` again", l.id)));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(f) => {
                    let (delete, put) = tag_restore(&l.tags, &podnet_keys(s, l), &f.tags);
                    let moved = route_back(&tables, &l.id, f.route_table_id.as_deref());
                    if delete.is_empty() && put.is_empty() && moved.is_none() {
                        continue;
                    }
                    env.status(self.id(), &format!("putting {} back as the apply found it", l.id));
                    if !delete.is_empty() {
                        env.aws.ec2.delete_tags(&l.id, &delete).await?;
                    }
                    if !put.is_empty() {
                        env.aws.ec2.create_tags(&l.id, &put).await?;
                    }
                    match moved {
                        Some(RouteBack::To { association_id, table }) => {
                            env.aws
                                .ec2
                                .replace_route_table_association(&association_id, &table)
                                .await?;
                        }
                        Some(RouteBack::Main { association_id }) => {
                            env.aws.ec2.disassociate_route_table(&association_id).await?;
                        }
                        Some(RouteBack::Associate { table }) => {
                            env.aws.ec2.associate_route_table(&table, &l.id).await?;
                        }
                        None => {}
                    }
                    out.restored.push(l.id.clone());
                }
            }
        }
        Ok(out)
    }
}

/// How an adopted subnet gets its route table back.
#[derive(Debug, PartialEq, Eq)]
enum RouteBack {
    /// Its explicit association moves to the table it had.
    To { association_id: String, table: String },
    /// It used the main table implicitly: the explicit association goes.
    Main { association_id: String },
    /// It had an explicit table and has none now: it gets it back.
    Associate { table: String },
}

/// The subnet's explicit association now: its table and id.
fn explicit(tables: &[RouteTableInfo], subnet: &str) -> Option<(String, String)> {
    tables.iter().find_map(|t| {
        let a = t.association_for(subnet).filter(|a| !a.main)?;
        Some((t.id.clone(), a.id.clone()))
    })
}

fn table_of(tables: &[RouteTableInfo], subnet: &str) -> String {
    explicit(tables, subnet).map_or_else(|| "the main table".to_string(), |(t, _)| t)
}

/// What puts `subnet` back on the table it had (`None`: it is there).
fn route_back(tables: &[RouteTableInfo], subnet: &str, found: Option<&str>) -> Option<RouteBack> {
    match (explicit(tables, subnet), found) {
        (Some((now, _)), Some(was)) if now == was => None,
        (Some((_, association_id)), Some(was)) => Some(RouteBack::To {
            association_id,
            table: was.to_string(),
        }),
        (Some((_, association_id)), None) => Some(RouteBack::Main { association_id }),
        (None, Some(was)) => Some(RouteBack::Associate { table: was.to_string() }),
        (None, None) => None,
    }
}

/// The tag keys podnet sets on a pod subnet that the subnet carries now:
/// its ownership tag and the keys recorded for an adopted subnet.
fn podnet_keys(s: &PodSubnet, live: &crate::aws::ec2::SubnetInfo) -> Vec<String> {
    let mut keys: Vec<String> = vec![
        OWNER_TAG.to_string(),
        crate::spec::CNI_ROLE_TAG.to_string(),
        "Name".to_string(),
    ];
    if let Some(f) = &s.found {
        keys.extend(f.tags.keys().cloned());
    }
    keys.retain(|k| live.tags.contains_key(k));
    keys.sort();
    keys.dedup();
    keys
}

/// disassociate-cidr: the secondary block, when podnet associated it.
pub struct DisassociateCidr {
    pub vpc_id: String,
    pub association: Option<AssociateCidrOutputs>,
    pub cidr: Ipv4Net,
}

impl DisassociateCidr {
    fn ours(&self) -> Option<&AssociateCidrOutputs> {
        self.association.as_ref().filter(|a| a.created == Some(true))
    }
}

impl Produces for DisassociateCidr {
    type Output = Removed;
}

#[async_trait]
impl Unit<Env> for DisassociateCidr {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::DISASSOCIATE_CIDR
    }

    fn describe(&self) -> String {
        format!("remove {} from {}", self.cidr, self.vpc_id)
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(self.id(), self.describe());
        let name = format!("{} on {}", self.cidr, self.vpc_id);
        let Some(a) = self.ours() else {
            return Ok(plan.with(
                Change::new(Action::NoOp, "aws_vpc_ipv4_cidr_block_association", name)
                    .because("podnet did not associate it"),
            ));
        };
        let vpc = env.aws.ec2.describe_vpc(&self.vpc_id).await?;
        let live = vpc
            .cidr_associations
            .iter()
            .any(|x| x.association_id == a.association_id && x.is_live());
        Ok(plan.with(if live {
            Change::new(Action::Delete, "aws_vpc_ipv4_cidr_block_association", name)
                .set("association_id", &a.association_id)
        } else {
            Change::new(Action::NoOp, "aws_vpc_ipv4_cidr_block_association", name).because("already removed")
        }))
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<Removed, StepError> {
        let Some(a) = self.ours() else {
            return Ok(Removed::default());
        };
        let mut out = Removed::default();
        let deadline = Instant::now() + env.waits.propagation.max(Duration::from_secs(60));
        loop {
            let vpc = env.aws.ec2.describe_vpc(&self.vpc_id).await?;
            let Some(x) = vpc
                .cidr_associations
                .iter()
                .find(|x| x.association_id == a.association_id)
            else {
                return Ok(out);
            };
            match x.state.as_str() {
                "associating" | "associated" if out.removed.is_empty() => {
                    env.status(self.id(), &format!("disassociating {} ({})", a.cidr, a.association_id));
                    match env.aws.ec2.disassociate_vpc_cidr_block(&a.association_id).await {
                        Ok(_) => {
                            out.removed.push(a.association_id.clone());
                            // EC2 answers `disassociating`; a read at once may
                            // still say `associated` (eventual consistency).
                            tokio::time::sleep(env.waits.poll).await;
                        }
                        Err(e) if e.code.as_deref() == Some("InvalidCidrBlock.InUse") => {
                            return Err(StepError::new(
                                ErrorClass::Blocked,
                                format!("EC2 keeps {} on {}: a subnet is still in it ({e})", a.cidr, self.vpc_id),
                            )
                            .hint("delete what is left in the block (`aws ec2 describe-subnets --filters Name=vpc-id,Values=…`), then run `podnet rollback` again"));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                "disassociated" => return Ok(out),
                "failed" => {
                    return Err(StepError::new(
                        ErrorClass::Blocked,
                        format!("EC2 reports the association {} as failed", a.association_id),
                    )
                    .hint("see `aws ec2 describe-vpcs`; once the block is gone or associated again, run `podnet rollback` again"));
                }
                state => {
                    if Instant::now() >= deadline {
                        return Err(StepError::new(
                            ErrorClass::Timeout,
                            format!("the association {} is still {state}", a.association_id),
                        )
                        .hint("run `podnet rollback` again to keep waiting"));
                    }
                    env.status(self.id(), &format!("waiting for {} ({state})", a.association_id));
                    tokio::time::sleep(env.waits.poll).await;
                }
            }
        }
    }
}
