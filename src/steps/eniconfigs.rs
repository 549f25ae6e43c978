//! apply-eniconfigs: one `ENIConfig` per AZ, named after the AZ, pointing at
//! that AZ's pod subnet with the plan's security groups, by server-side apply
//! with podnet's field manager. It runs before custom networking is enabled:
//! from VPC CNI 1.13 a node whose ENIConfig is missing never becomes Ready.
//! A same-named ENIConfig that points elsewhere stops the step unless the
//! plan says to adopt it.

use async_trait::async_trait;
use ipnet::Ipv4Net;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{Env, ids};
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::k8s::crds::{EniConfig, EniConfigSpec};
use crate::k8s::{self, KubeError, with_retry};

pub const ENICONFIG_CRD: &str = "eniconfigs.crd.k8s.amazonaws.com";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniConfigInput {
    /// The AZ, which is also the ENIConfig's name.
    pub availability_zone: String,
    pub cidr: Ipv4Net,
}

pub struct ApplyEniConfigs {
    pub vpc_id: String,
    pub eniconfigs: Vec<EniConfigInput>,
    pub security_groups: Vec<String>,
    pub adopt_existing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedEniConfig {
    pub name: String,
    pub subnet: String,
    pub security_groups: Vec<String>,
    /// podnet created it (false: it existed before the first attempt).
    /// `None` in journals written before podnet recorded it.
    #[serde(default)]
    pub created: Option<bool>,
    /// An adopted ENIConfig's spec before podnet rewrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<FoundEniConfig>,
}

/// An ENIConfig as it was before podnet's first attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundEniConfig {
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    /// Its labels (podnet's apply sets `app.kubernetes.io/managed-by`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The planned ENIConfigs that existed before the first attempt, by name,
/// recorded before anything is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ApplyEniConfigsCheckpoint {
    pub found_before: Option<std::collections::BTreeMap<String, FoundEniConfig>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyEniConfigsOutputs {
    pub eniconfigs: Vec<AppliedEniConfig>,
}

fn kube(env: &Env) -> Result<&kube::Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

fn current(o: &EniConfig) -> (Option<String>, Vec<String>) {
    (o.spec.subnet.clone(), o.spec.security_groups.clone())
}

impl ApplyEniConfigs {
    /// Subnet ids by AZ: from create-pod-subnets' outputs when it has run,
    /// else found in EC2 by CIDR (a re-plan), else unknown until apply.
    async fn subnets(&self, env: &Env, ctx: &StepCtx<'_>) -> Result<Vec<(EniConfigInput, Option<String>)>, StepError> {
        if let Some(out) = ctx.output(&super::pod_subnets::OUTPUT)? {
            return Ok(self
                .eniconfigs
                .iter()
                .map(|e| {
                    let id = out
                        .subnets
                        .iter()
                        .find(|s| s.availability_zone == e.availability_zone)
                        .map(|s| s.subnet_id.clone());
                    (e.clone(), id)
                })
                .collect());
        }
        let subnets = env.aws.ec2.describe_subnets(&self.vpc_id).await?;
        Ok(self
            .eniconfigs
            .iter()
            .map(|e| {
                let id = subnets
                    .iter()
                    .find(|s| s.cidr == e.cidr && s.availability_zone == e.availability_zone)
                    .map(|s| s.id.clone());
                (e.clone(), id)
            })
            .collect())
    }

    fn mismatch(&self, name: &str, have: &(Option<String>, Vec<String>), subnet: &str) -> StepError {
        StepError::new(
            ErrorClass::Conflict,
            format!(
                "ENIConfig {name} already exists and points at {} with {:?}, not {subnet} with {:?}",
                have.0.as_deref().unwrap_or("no subnet"),
                have.1,
                self.security_groups
            ),
        )
        .hint("set eniconfig.adopt_existing = true in the plan file to take it over, or remove it if it is stale")
    }

    async fn wait_crd(&self, client: &kube::Client, env: &Env) -> Result<(), StepError> {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = with_retry(&format!("get CRD {ENICONFIG_CRD}"), || api.get_opt(ENICONFIG_CRD)).await?;
        if crd_established(crd.as_ref()).is_ok() {
            return Ok(());
        }
        let report = |m: String| env.status(ids::APPLY_ENICONFIGS, &m);
        k8s::wait::until(api, ENICONFIG_CRD, env.waits.eniconfig_crd, &report, crd_established)
            .await
            .map_err(|e| {
                let what = if crd.is_none() {
                    format!("the ENIConfig CRD ({ENICONFIG_CRD}) is not installed")
                } else {
                    "the ENIConfig CRD is not established".to_string()
                };
                StepError::new(ErrorClass::Timeout, format!("{what}: {e}")).hint(
                    "the vpc-cni addon installs it; check `kubectl get crd eniconfigs.crd.k8s.amazonaws.com`, then run `podnet resume`",
                )
            })
    }
}

/// The CRD's `Established` condition (kube-runtime's `is_crd_established`,
/// with a progress line for the wait).
fn crd_established(crd: Option<&CustomResourceDefinition>) -> Result<(), String> {
    let established = crd
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    if established {
        Ok(())
    } else {
        Err("waiting for the ENIConfig CRD to be established".to_string())
    }
}

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

impl Produces for ApplyEniConfigs {
    type Output = ApplyEniConfigsOutputs;
}

#[async_trait]
impl Unit<Env> for ApplyEniConfigs {
    type Checkpoint = ApplyEniConfigsCheckpoint;

    fn id(&self) -> &str {
        ids::APPLY_ENICONFIGS
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.eniconfigs.iter().map(|e| e.availability_zone.as_str()).collect();
        format!("apply ENIConfigs {}", names.join(", "))
    }

    async fn observe(&self, env: &Env, ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let client = kube(env)?;
        let api: Api<EniConfig> = Api::all(client.clone());
        let mut plan = StepPlan::new(self.id(), self.describe());
        for (e, subnet) in self.subnets(env, ctx).await? {
            let name = &e.availability_zone;
            let existing = match api.get_opt(name).await {
                Ok(o) => o,
                // No CRD yet: every ENIConfig is to be created.
                Err(kube::Error::Api(s)) if s.code == 404 => None,
                Err(err) => return Err(KubeError::from_kube(format!("get ENIConfig {name}"), err).into()),
            };
            let change = match (existing, &subnet) {
                (None, _) => {
                    let c = Change::new(Action::Create, "kubernetes_eniconfig", name);
                    let c = match &subnet {
                        Some(id) => c.set("spec.subnet", id),
                        None => c.unknown("spec.subnet"),
                    };
                    c.set("spec.securityGroups", &self.security_groups)
                }
                (Some(o), Some(id)) => {
                    let have = current(&o);
                    if have.0.as_deref() == Some(id.as_str()) && have.1 == self.security_groups {
                        Change::new(Action::NoOp, "kubernetes_eniconfig", name).because("matches the plan")
                    } else if self.adopt_existing {
                        Change::new(Action::Update, "kubernetes_eniconfig", name)
                            .change("spec.subnet", &have.0, id)
                            .change("spec.securityGroups", &have.1, &self.security_groups)
                            .because("adopted")
                    } else {
                        return Err(self.mismatch(name, &have, id));
                    }
                }
                (Some(o), None) => {
                    let have = current(&o);
                    if !self.adopt_existing {
                        return Err(self.mismatch(name, &have, "the new pod subnet"));
                    }
                    Change::new(Action::Update, "kubernetes_eniconfig", name)
                        .unknown("spec.subnet")
                        .because("adopted")
                }
            };
            plan = plan.with(change);
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let client = kube(env)?;
        self.wait_crd(client, env).await?;
        let api: Api<EniConfig> = Api::all(client.clone());
        if ctx.checkpoint().found_before.is_none() {
            let mut found = std::collections::BTreeMap::new();
            for e in &self.eniconfigs {
                let name = &e.availability_zone;
                if let Some(o) = with_retry(&format!("get ENIConfig {name}"), || api.get_opt(name)).await? {
                    let (subnet, security_groups) = current(&o);
                    let labels = o.labels().clone();
                    found.insert(
                        name.clone(),
                        FoundEniConfig {
                            subnet,
                            security_groups,
                            labels,
                        },
                    );
                }
            }
            ctx.save(|c| c.found_before = Some(found))?;
        }
        let found_before = ctx.checkpoint().found_before.clone().unwrap_or_default();
        let mut out = ApplyEniConfigsOutputs::default();
        for (e, subnet) in self.subnets(env, ctx).await? {
            let name = e.availability_zone.clone();
            let subnet = subnet.ok_or_else(|| {
                StepError::failed(format!(
                    "no pod subnet for {name} was recorded by {}",
                    ids::CREATE_POD_SUBNETS
                ))
            })?;
            let applied = AppliedEniConfig {
                name: name.clone(),
                subnet: subnet.clone(),
                security_groups: self.security_groups.clone(),
                created: Some(!found_before.contains_key(&name)),
                found: found_before.get(&name).cloned(),
            };
            if let Some(o) = with_retry(&format!("get ENIConfig {name}"), || api.get_opt(&name)).await? {
                let have = current(&o);
                let same = have.0.as_deref() == Some(subnet.as_str()) && have.1 == self.security_groups;
                if !same && !self.adopt_existing {
                    return Err(self.mismatch(&name, &have, &subnet));
                }
                // Already as planned and podnet's: a second apply writes nothing.
                if same && o.labels().get(MANAGED_BY).is_some_and(|v| v == "podnet") {
                    out.eniconfigs.push(applied);
                    continue;
                }
            }
            // podnet owns the whole ENIConfig: its subnet, its groups, its label.
            let mut body = EniConfig::new(
                &name,
                EniConfigSpec {
                    subnet: Some(subnet.clone()),
                    security_groups: self.security_groups.clone(),
                },
            );
            body.metadata.labels = Some([(MANAGED_BY.to_string(), "podnet".to_string())].into());
            env.status(self.id(), &format!("applying ENIConfig {name}"));
            k8s::apply_owned(&api, &name, &body, &format!("ENIConfig {name}")).await?;
            out.eniconfigs.push(applied);
        }
        Ok(out)
    }
}
