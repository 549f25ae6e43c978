//! What a finished apply's journal says podnet created and changed: the only
//! source a rollback trusts. Each unit's recorded output is decoded with its
//! own type; a journal written before podnet recorded a fact (whether it
//! created the association, a subnet, an ENIConfig; a setting's value
//! before) yields an error naming it instead of a guess.

use serde::de::DeserializeOwned;

use crate::engine::{JournalState, StepStatus};
use crate::steps::addon::EnableCustomNetworkingOutputs;
use crate::steps::associate_cidr::AssociateCidrOutputs;
use crate::steps::eniconfigs::{AppliedEniConfig, ApplyEniConfigsOutputs};
use crate::steps::ids;
use crate::steps::karpenter::ConfigureKarpenterOutputs;
use crate::steps::pod_subnets::{CreatePodSubnetsOutputs, PodSubnet};
use crate::steps::security_groups::{PatchSecurityGroupsOutputs, PatchedRule};

/// The apply's record, unit by unit (`None`: the unit did not run).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApplyRecord {
    pub association: Option<AssociateCidrOutputs>,
    pub rules: Vec<PatchedRule>,
    pub subnets: Vec<PodSubnet>,
    pub eniconfigs: Vec<AppliedEniConfig>,
    pub karpenter: Option<ConfigureKarpenterOutputs>,
    pub addon: Option<EnableCustomNetworkingOutputs>,
}

/// Why the journal cannot say what to undo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the journal's output of {step} does not decode ({error}); it was not written by this podnet")]
    Decode { step: String, error: String },
    #[error(
        "the journal of this apply does not record {what} ({step}, written by a podnet before 0.2): a rollback would have to guess; undo that part by hand"
    )]
    NotRecorded { step: String, what: String },
    #[error("{step} is {status:?} in the journal: the apply is unfinished")]
    Unfinished { step: String, status: StepStatus },
}

fn output<T: DeserializeOwned>(state: &JournalState, step: &str) -> Result<Option<T>, RecordError> {
    let Some(s) = state.step(step) else { return Ok(None) };
    match (&s.status, &s.outputs) {
        (StepStatus::Succeeded, Some(v)) => {
            serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| RecordError::Decode {
                    step: step.to_string(),
                    error: e.to_string(),
                })
        }
        (StepStatus::Pending, _) => Ok(None),
        (status, _) => Err(RecordError::Unfinished {
            step: step.to_string(),
            status: *status,
        }),
    }
}

fn missing(step: &str, what: &str) -> RecordError {
    RecordError::NotRecorded {
        step: step.to_string(),
        what: what.to_string(),
    }
}

/// Reads the record; every fact a rollback needs must be there.
pub fn read(state: &JournalState) -> Result<ApplyRecord, RecordError> {
    let association: Option<AssociateCidrOutputs> = output(state, ids::ASSOCIATE_CIDR)?;
    if let Some(a) = &association
        && a.created.is_none()
    {
        return Err(missing(ids::ASSOCIATE_CIDR, "whether podnet made the CIDR association"));
    }
    let rules = output::<PatchSecurityGroupsOutputs>(state, ids::PATCH_SECURITY_GROUPS)?
        .map(|o| o.rules)
        .unwrap_or_default();
    let subnets = output::<CreatePodSubnetsOutputs>(state, ids::CREATE_POD_SUBNETS)?
        .map(|o| o.subnets)
        .unwrap_or_default();
    if let Some(s) = subnets.iter().find(|s| s.created.is_none()) {
        return Err(missing(
            ids::CREATE_POD_SUBNETS,
            &format!("whether podnet created {} ({})", s.subnet_id, s.cidr),
        ));
    }
    let eniconfigs = output::<ApplyEniConfigsOutputs>(state, ids::APPLY_ENICONFIGS)?
        .map(|o| o.eniconfigs)
        .unwrap_or_default();
    if let Some(e) = eniconfigs.iter().find(|e| e.created.is_none()) {
        return Err(missing(
            ids::APPLY_ENICONFIGS,
            &format!("whether podnet created ENIConfig {}", e.name),
        ));
    }
    let karpenter: Option<ConfigureKarpenterOutputs> = output(state, ids::CONFIGURE_KARPENTER)?;
    if let Some(k) = &karpenter
        && !k.skipped
        && k.reserved_enis_before.is_none()
    {
        return Err(missing(ids::CONFIGURE_KARPENTER, "RESERVED_ENIS before the apply"));
    }
    let addon: Option<EnableCustomNetworkingOutputs> = output(state, ids::ENABLE_CUSTOM_NETWORKING)?;
    if let Some(a) = &addon
        && a.env_before.is_none()
    {
        return Err(missing(
            ids::ENABLE_CUSTOM_NETWORKING,
            "the vpc-cni configuration before the apply",
        ));
    }
    Ok(ApplyRecord {
        association,
        rules,
        subnets,
        eniconfigs,
        karpenter,
        addon,
    })
}
