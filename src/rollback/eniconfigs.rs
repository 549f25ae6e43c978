//! remove-eniconfigs: the ENIConfigs podnet created are deleted, once no
//! node uses them (the replacements ran before); an adopted one gets the
//! subnet, security groups and labels it had back. One someone changed
//! since the apply stops the unit: podnet deletes only what it made.

use async_trait::async_trait;
use kube::Api;

use super::plan::ids;
use super::remove::Removed;
use crate::engine::UnitCtx;
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit};
use crate::k8s::crds::{EniConfig, EniConfigSpec};
use crate::k8s::{self, with_retry};
use crate::steps::Env;
use crate::steps::eniconfigs::AppliedEniConfig;

fn kube(env: &Env) -> Result<&kube::Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

/// remove-eniconfigs.
pub struct RemoveEniConfigs {
    pub eniconfigs: Vec<AppliedEniConfig>,
}

impl RemoveEniConfigs {
    /// `Some(change)` for what is left to do on `e`, given it now exists as `live`.
    fn change(e: &AppliedEniConfig, live: Option<&EniConfig>) -> Result<Option<Change>, StepError> {
        let Some(live) = live else { return Ok(None) };
        match &e.found {
            None if live.spec.subnet.as_deref() != Some(e.subnet.as_str()) => Err(StepError::new(
                ErrorClass::Blocked,
                format!(
                    "ENIConfig {} now points at {} instead of podnet's {}: someone changed it, and podnet will not delete it",
                    e.name,
                    live.spec.subnet.as_deref().unwrap_or("no subnet"),
                    e.subnet
                ),
            )
            .hint("put it back or delete it by hand, then run `podnet rollback` again")),
            None => Ok(Some(
                Change::new(Action::Delete, "kubernetes_eniconfig", &e.name).set("spec.subnet", &e.subnet),
            )),
            Some(f) if live.spec.subnet == f.subnet && live.spec.security_groups == f.security_groups => Ok(None),
            Some(f) => Ok(Some(
                Change::new(Action::Update, "kubernetes_eniconfig", &e.name)
                    .change("spec.subnet", &live.spec.subnet, &f.subnet)
                    .change("spec.securityGroups", &live.spec.security_groups, &f.security_groups)
                    .because("it existed before the apply"),
            )),
        }
    }

    async fn live(client: &kube::Client, name: &str) -> Result<Option<EniConfig>, StepError> {
        let api: Api<EniConfig> = Api::all(client.clone());
        Ok(with_retry(&format!("get ENIConfig {name}"), || api.get_opt(name)).await?)
    }
}

impl Produces for RemoveEniConfigs {
    type Output = Removed;
}

#[async_trait]
impl Unit<Env> for RemoveEniConfigs {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::REMOVE_ENICONFIGS
    }

    fn describe(&self) -> String {
        "delete the ENIConfigs podnet created (adopted ones put back)".into()
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let client = kube(env)?;
        let mut plan = StepPlan::new(self.id(), self.describe());
        for e in &self.eniconfigs {
            let live = Self::live(client, &e.name).await?;
            plan = plan.with(match Self::change(e, live.as_ref())? {
                Some(c) => c,
                None => {
                    Change::new(Action::NoOp, "kubernetes_eniconfig", &e.name).because("already as before the apply")
                }
            });
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<Removed, StepError> {
        let client = kube(env)?;
        let api: Api<EniConfig> = Api::all(client.clone());
        let mut out = Removed::default();
        for e in &self.eniconfigs {
            let live = Self::live(client, &e.name).await?;
            if Self::change(e, live.as_ref())?.is_none() {
                continue;
            }
            let what = format!("ENIConfig {}", e.name);
            match &e.found {
                None => {
                    env.status(self.id(), &format!("deleting {what}"));
                    match api.delete(&e.name, &Default::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(err) => return Err(k8s::KubeError::from_kube(format!("delete {what}"), err).into()),
                    }
                    out.removed.push(e.name.clone());
                }
                Some(f) => {
                    let mut body = EniConfig::new(
                        &e.name,
                        EniConfigSpec {
                            subnet: f.subnet.clone(),
                            security_groups: f.security_groups.clone(),
                        },
                    );
                    body.metadata.labels = (!f.labels.is_empty()).then(|| f.labels.clone());
                    env.status(self.id(), &format!("putting {what} back"));
                    k8s::apply_owned(&api, &e.name, &body, &what).await?;
                    out.restored.push(e.name.clone());
                }
            }
        }
        Ok(out)
    }
}
