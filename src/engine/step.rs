//! The shape of a unit of work, after steno's actions: a stable id, a
//! read-only `observe` that says what would change, and an idempotent
//! `apply` that acts only on the difference. A unit's state is typed: its
//! [`Produces::Output`] is what later units read through an [`OutputOf`]
//! handle (a mismatch between producer and consumer is a compile error),
//! and its [`Unit::Checkpoint`] is what an interrupted attempt left for the
//! next one (a request token, an update id). Units hold no other state, so a
//! resumed run sees exactly what the interrupted one saw.
//!
//! The journal stores both as JSON; [`Step`] is the engine's type-erased
//! view that decodes and encodes them at that boundary, and nowhere else.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::change::StepPlan;
pub use super::error::{ErrorClass, NOTHING_SAVED, StepError};
use super::journal::{Event, Journal, JournalError};

pub use super::journal::Recorded;

/// A unit's checkpoint fields as journaled, by field name.
pub type Checkpoints = BTreeMap<String, Recorded>;

impl From<JournalError> for StepError {
    fn from(e: JournalError) -> Self {
        StepError::failed(format!("cannot write the journal: {e}"))
            .hint("check the state directory's disk space and permissions, then run `podnet resume`")
    }
}

/// Whether `unit` is `name` itself or one of the units the plan expanded a
/// step called `name` into (`replace-karpenter-nodes/batch-2`).
pub fn is_unit_of(unit: &str, name: &str) -> bool {
    unit == name || unit.strip_prefix(name).is_some_and(|rest| rest.starts_with('/'))
}

/// What a unit records when it succeeds, for the units after it.
pub trait Produces {
    type Output: Serialize + DeserializeOwned + Send + Sync;
}

/// A typed reference to unit `U`'s recorded output.
pub struct OutputOf<U> {
    unit: Cow<'static, str>,
    _unit: PhantomData<fn() -> U>,
}

impl<U: Produces> OutputOf<U> {
    pub const fn new(unit: &'static str) -> Self {
        OutputOf {
            unit: Cow::Borrowed(unit),
            _unit: PhantomData,
        }
    }

    /// The output of a unit the plan expanded (`replace-karpenter-nodes/batch-2`).
    pub fn named(unit: String) -> Self {
        OutputOf {
            unit: Cow::Owned(unit),
            _unit: PhantomData,
        }
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }
}

/// What a unit sees of the run: the recorded outputs of the units before it,
/// and its own checkpoints from earlier attempts.
pub struct StepCtx<'a> {
    step: &'a str,
    outputs: &'a BTreeMap<String, Recorded>,
    progress: Checkpoints,
    journal: Option<&'a Mutex<Journal>>,
}

impl<'a> StepCtx<'a> {
    /// A context for planning: no journal, so no checkpoints.
    pub fn planning(step: &'a str, outputs: &'a BTreeMap<String, Recorded>) -> Self {
        StepCtx {
            step,
            outputs,
            progress: BTreeMap::new(),
            journal: None,
        }
    }

    pub(crate) fn running(
        step: &'a str,
        outputs: &'a BTreeMap<String, Recorded>,
        progress: Checkpoints,
        journal: &'a Mutex<Journal>,
    ) -> Self {
        StepCtx {
            step,
            outputs,
            progress,
            journal: Some(journal),
        }
    }

    pub fn step(&self) -> &str {
        self.step
    }

    pub(crate) fn into_progress(self) -> Checkpoints {
        self.progress
    }

    /// Whether the run is executing (false while planning).
    pub fn is_running(&self) -> bool {
        self.journal.is_some()
    }

    /// An earlier unit's output; `None` while planning, before it has run.
    pub fn output<U: Produces>(&self, of: &OutputOf<U>) -> Result<Option<U::Output>, StepError> {
        match self.outputs.get(of.unit()) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| StepError::failed(format!("outputs of step {} are unreadable: {e}", of.unit()))),
        }
    }

    /// An earlier unit's output, which must exist because that unit ran.
    pub fn require_output<U: Produces>(&self, of: &OutputOf<U>) -> Result<U::Output, StepError> {
        self.output(of)?.ok_or_else(|| {
            StepError::failed(format!(
                "step {} needs the outputs of {}, which has not run",
                self.step,
                of.unit()
            ))
        })
    }

    /// This unit's checkpoint, decoded. One that does not decode is an
    /// error, never "absent": treating it as absent would mint a second
    /// idempotency token and repeat a change.
    fn decode<C: DeserializeOwned + Default>(&self) -> Result<C, StepError> {
        if self.progress.is_empty() {
            return Ok(C::default());
        }
        let whole = serde_json::Value::Object(self.progress.clone().into_iter().collect());
        serde_json::from_value(whole).map_err(|e| {
            // Name the field that is wrong (checkpoint types default every
            // field, so each one decodes on its own).
            let field = self
                .progress
                .iter()
                .find(|(k, v)| serde_json::from_value::<C>(serde_json::json!({ k.as_str(): v })).is_err())
                .map(|(k, _)| format!(" {k}"))
                .unwrap_or_default();
            StepError::failed(format!(
                "step {}'s checkpoint{field} does not decode ({e}): podnet will not guess what an earlier attempt did",
                self.step
            ))
            .hint("the journal was written by another podnet version or edited; finish it with the version that wrote it, or set it aside with `podnet apply --replan` once you have checked the cluster")
        })
    }

    /// Durably records one checkpoint field before going on.
    fn record(&mut self, key: &str, value: Recorded) -> Result<(), StepError> {
        let journal = self
            .journal
            .ok_or_else(|| StepError::failed(format!("step {} tried to checkpoint while planning", self.step)))?;
        let mut j = journal.lock().map_err(|_| StepError::failed("journal lock poisoned"))?;
        j.append(Event::StepProgress {
            step: self.step.to_string(),
            key: key.to_string(),
            value: value.clone(),
        })?;
        self.progress.insert(key.to_string(), value);
        Ok(())
    }
}

/// A running unit's context: the run's, plus its typed checkpoint.
pub struct UnitCtx<'c, 'a, C> {
    ctx: &'c mut StepCtx<'a>,
    state: C,
}

impl<'a, C> Deref for UnitCtx<'_, 'a, C> {
    type Target = StepCtx<'a>;

    fn deref(&self) -> &StepCtx<'a> {
        self.ctx
    }
}

fn fields(value: &impl Serialize, step: &str) -> Result<serde_json::Map<String, Recorded>, StepError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(serde_json::Value::Null) => Ok(serde_json::Map::new()),
        Ok(other) => Err(StepError::failed(format!(
            "step {step}'s checkpoint is not a record of fields: {other}"
        ))),
        Err(e) => Err(StepError::failed(format!(
            "step {step}'s checkpoint does not encode: {e}"
        ))),
    }
}

impl<C: Serialize> UnitCtx<'_, '_, C> {
    /// What earlier attempts of this unit checkpointed.
    pub fn checkpoint(&self) -> &C {
        &self.state
    }

    /// Changes the checkpoint and durably records every field that changed
    /// before going on, so a resumed attempt knows it (a request token, a
    /// node already drained). Not available while planning.
    pub fn save(&mut self, change: impl FnOnce(&mut C)) -> Result<(), StepError> {
        let before = fields(&self.state, self.ctx.step)?;
        change(&mut self.state);
        for (key, value) in fields(&self.state, self.ctx.step)? {
            if before.get(&key) != Some(&value) {
                self.ctx.record(&key, value)?;
            }
        }
        Ok(())
    }

    /// The checkpointed `field`, or `make()` checkpointed now: the way to
    /// generate an idempotency token exactly once per unit.
    pub fn once<T: Clone>(
        &mut self,
        field: impl Fn(&mut C) -> &mut Option<T>,
        make: impl FnOnce() -> T,
    ) -> Result<T, StepError> {
        if let Some(v) = field(&mut self.state).clone() {
            return Ok(v);
        }
        let v = make();
        let kept = v.clone();
        self.save(|c| *field(c) = Some(kept))?;
        Ok(v)
    }
}

/// One unit of a migration, over an environment `E` (the AWS and Kubernetes
/// clients in podnet; an in-memory world in tests).
#[async_trait]
pub trait Unit<E: ?Sized + Sync>: Produces + Send + Sync {
    /// What an interrupted attempt leaves for the next: a record whose
    /// fields all default (`#[serde(default)]`), journaled field by field.
    type Checkpoint: Serialize + DeserializeOwned + Default + Send + Sync;

    /// Stable across releases: the journal refers to units by it.
    fn id(&self) -> &str;

    /// One line for humans.
    fn describe(&self) -> String;

    /// Read-only: what `apply` would change now.
    async fn observe(&self, env: &E, ctx: &StepCtx<'_>) -> Result<StepPlan, StepError>;

    /// Observes, then changes only what differs. Must be safe to run again
    /// after any interruption, including after its own side effects.
    async fn apply(&self, env: &E, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError>;
}

/// The engine's view of a unit: outputs and checkpoints in journal form.
/// Every [`Unit`] is one.
#[async_trait]
pub trait Step<E: ?Sized + Sync>: Send + Sync {
    fn id(&self) -> &str;
    fn describe(&self) -> String;
    async fn observe(&self, env: &E, ctx: &StepCtx<'_>) -> Result<StepPlan, StepError>;
    /// Decodes the unit's checkpoint, applies, and encodes its output.
    async fn apply(&self, env: &E, ctx: &mut StepCtx<'_>) -> Result<Recorded, StepError>;
}

#[async_trait]
impl<E: ?Sized + Sync, U: Unit<E>> Step<E> for U {
    fn id(&self) -> &str {
        Unit::id(self)
    }

    fn describe(&self) -> String {
        Unit::describe(self)
    }

    async fn observe(&self, env: &E, ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        Unit::observe(self, env, ctx).await
    }

    async fn apply(&self, env: &E, ctx: &mut StepCtx<'_>) -> Result<Recorded, StepError> {
        let state = ctx.decode::<U::Checkpoint>()?;
        let mut unit_ctx = UnitCtx { ctx, state };
        let out = Unit::apply(self, env, &mut unit_ctx).await?;
        serde_json::to_value(out)
            .map_err(|e| StepError::failed(format!("step {}'s output does not encode: {e}", Unit::id(self))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use serde::Deserialize;

    use super::*;
    use crate::engine::journal;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, rename_all = "kebab-case")]
    struct TokenCheckpoint {
        token: Option<String>,
        update_id: Option<String>,
    }

    /// Mints a token once, then records an update id.
    #[derive(Default)]
    struct Tokened {
        applied: AtomicU32,
    }

    impl Produces for Tokened {
        type Output = String;
    }

    #[async_trait]
    impl Unit<()> for Tokened {
        type Checkpoint = TokenCheckpoint;

        fn id(&self) -> &str {
            "enable-custom-networking"
        }

        fn describe(&self) -> String {
            "mint a token".into()
        }

        async fn observe(&self, _: &(), _: &StepCtx<'_>) -> Result<StepPlan, StepError> {
            Ok(StepPlan::new("enable-custom-networking", "mint a token"))
        }

        async fn apply(&self, _: &(), ctx: &mut UnitCtx<'_, '_, TokenCheckpoint>) -> Result<String, StepError> {
            self.applied.fetch_add(1, Ordering::SeqCst);
            let token = ctx.once(|c| &mut c.token, || "a-second-token".into())?;
            ctx.save(|c| c.update_id = Some(format!("update-for-{token}")))?;
            Ok(token)
        }
    }

    fn journal_in(dir: &tempfile::TempDir) -> (Mutex<Journal>, std::path::PathBuf) {
        let path = dir.path().join("journal.jsonl");
        (Mutex::new(Journal::open(&path).unwrap().0), path)
    }

    #[tokio::test]
    async fn a_checkpoint_that_does_not_decode_is_an_error_never_absent() {
        let dir = tempfile::tempdir().unwrap();
        let (j, path) = journal_in(&dir);
        let outputs = BTreeMap::new();
        let unit = Tokened::default();
        let progress: Checkpoints = [("token".to_string(), serde_json::json!(42))].into();
        let mut ctx = StepCtx::running("enable-custom-networking", &outputs, progress, &j);
        let e = Step::apply(&unit, &(), &mut ctx).await.unwrap_err();
        assert!(e.message.contains("checkpoint token does not decode"), "{}", e.message);
        // The unit never ran, so it could not mint a second token over it,
        // and the recorded value is untouched.
        assert_eq!(unit.applied.load(Ordering::SeqCst), 0);
        assert_eq!(ctx.into_progress()["token"], serde_json::json!(42));
        assert!(journal::read(&path).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_token_is_minted_once_and_only_changed_fields_are_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let (j, path) = journal_in(&dir);
        let outputs = BTreeMap::new();
        let unit = Tokened::default();
        let mut ctx = StepCtx::running("enable-custom-networking", &outputs, Checkpoints::new(), &j);
        let first = Step::apply(&unit, &(), &mut ctx).await.unwrap();
        let progress = ctx.into_progress();
        assert_eq!(progress["token"], "a-second-token");
        assert_eq!(progress["update-id"], "update-for-a-second-token");
        // Again, from what the first attempt checkpointed: the same token,
        // and nothing new journaled.
        let mut ctx = StepCtx::running("enable-custom-networking", &outputs, progress, &j);
        let again = Step::apply(&unit, &(), &mut ctx).await.unwrap();
        assert_eq!(first, again);
        let keys: Vec<String> = journal::read(&path)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.event {
                Event::StepProgress { key, .. } => Some(key),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["token", "update-id"]);
    }

    #[tokio::test]
    async fn planning_cannot_checkpoint() {
        let outputs = BTreeMap::new();
        let mut ctx = StepCtx::planning("enable-custom-networking", &outputs);
        let e = Step::apply(&Tokened::default(), &(), &mut ctx).await.unwrap_err();
        assert!(
            e.message.contains("tried to checkpoint while planning"),
            "{}",
            e.message
        );
    }
}
