//! verify: the last step of apply. It runs the checks of [`crate::verify`]
//! until they pass or a bounded wait runs out (replacement pods may still be
//! starting), and fails with every unmet check.

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Env, ids};
use crate::engine::{ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::verify::{Expectations, VerifyError, VerifyReport, verify};

pub struct Verify {
    pub expect: Expectations,
}

impl Produces for Verify {
    type Output = VerifyReport;
}

#[async_trait]
impl Unit<Env> for Verify {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::VERIFY
    }

    fn describe(&self) -> String {
        "verify pods, nodes, ENIConfigs, aws-node and Karpenter".to_string()
    }

    async fn observe(&self, _env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        Ok(
            StepPlan::new(self.id(), self.describe())
                .note("read-only; runs at the end of apply (also `podnet verify`)"),
        )
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<VerifyReport, StepError> {
        let kube = env
            .kube
            .as_ref()
            .ok_or_else(|| StepError::failed("no Kubernetes client"))?;
        let deadline = Instant::now() + env.waits.verify;
        loop {
            let report = verify(&env.aws, kube, &self.expect).await.map_err(|e| match e {
                VerifyError::Kube(e) => StepError::from(e),
                VerifyError::Aws(e) => StepError::from(e),
            })?;
            if report.passed() {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                let lines: Vec<String> = report
                    .failed()
                    .iter()
                    .map(|c| format!("{}: {} [{}]", c.id, c.summary, c.failures.join("; ")))
                    .collect();
                return Err(StepError::new(
                    ErrorClass::Failed,
                    format!("verification failed: {}", lines.join(" | ")),
                )
                .hint("`podnet verify` shows the checks; fix what they name, then run `podnet resume`"));
            }
            let failing: Vec<&str> = report.failed().iter().map(|c| c.id.as_str()).collect();
            env.status(self.id(), &format!("waiting for {}", failing.join(", ")));
            tokio::time::sleep(env.waits.poll).await;
        }
    }
}
