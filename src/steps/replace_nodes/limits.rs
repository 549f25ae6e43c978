//! NodePool cpu limits during a replacement. Karpenter cannot launch a
//! replacement while a NodePool sits at its `spec.limits.cpu`, and a node
//! being replaced counts until it is gone; migrated nodes also hold fewer
//! pods each, so the pool may need more nodes than before. A unit raises a
//! limit by one node of the largest size when it must, recording the limit
//! as written first (in its checkpoint, then its output), and the family's
//! last unit puts back every original the migrated nodes still fit in.

use std::collections::BTreeMap;

use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use super::Env;
use crate::engine::{StepError, UnitCtx};
use crate::k8s::crds::{NodeClaim, NodePool};
use crate::k8s::snapshot::NODEPOOL_LABEL;
use crate::k8s::{self, list_all, with_retry};

/// A NodePool's `spec.limits.cpu` as written: `10`, `"10"` or `"1500m"`.
pub use crate::k8s::crds::Quantity as CpuLimit;

/// The original limits of the NodePools a unit raised, by NodePool.
pub type RaisedLimits = BTreeMap<String, CpuLimit>;

/// A checkpoint that records the NodePool limits its unit raised.
pub trait RecordsRaises: Serialize {
    fn raised(&mut self) -> &mut RaisedLimits;
}

/// A NodePool's cpu limit and what its NodeClaims hold (millicores), and
/// the largest NodeClaim (what one replacement may need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Headroom {
    pub limit: Option<u64>,
    pub used: u64,
    pub largest: u64,
}

impl Headroom {
    /// The limit one more node of the largest size needs, if the current
    /// one is too low.
    pub fn raise_to(&self) -> Option<u64> {
        let limit = self.limit?;
        let need = self.used + self.largest;
        (need > limit).then_some(need)
    }
}

/// The NodePool's headroom, and its `spec.limits.cpu` as written (what a
/// restore puts back).
pub(super) async fn headroom(client: &kube::Client, nodepool: &str) -> Result<(Headroom, Option<CpuLimit>), StepError> {
    let pools: Api<NodePool> = Api::all(client.clone());
    let np = with_retry(&format!("get NodePool {nodepool}"), || pools.get_opt(nodepool)).await?;
    let written = np.and_then(|np| np.spec.limits.get("cpu").cloned());
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{NODEPOOL_LABEL}={nodepool}"));
    let claims = list_all(&claims, &lp, "NodeClaims").await?;
    let cpus: Vec<u64> = claims
        .iter()
        .filter_map(|c| c.status.as_ref()?.capacity.get("cpu")?.millis())
        .collect();
    let h = Headroom {
        limit: written.as_ref().and_then(CpuLimit::millis),
        used: cpus.iter().sum(),
        largest: cpus.iter().copied().max().unwrap_or(0),
    };
    Ok((h, written))
}

/// Sets a NodePool's `spec.limits.cpu` (server-side apply: podnet owns that
/// field, the rest of the NodePool stays its owner's).
async fn set_cpu_limit(client: &kube::Client, nodepool: &str, cpu: &CpuLimit, action: &str) -> Result<(), StepError> {
    let pools: Api<NodePool> = Api::all(client.clone());
    let body = serde_json::json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": { "name": nodepool },
        "spec": { "limits": { "cpu": cpu } }
    });
    k8s::apply_owned(
        &pools,
        nodepool,
        &body,
        &format!("NodePool {nodepool} ({action} its cpu limit)"),
    )
    .await?;
    Ok(())
}

pub(super) fn cores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

/// Raises every NodePool limit that would stop a replacement, the original
/// checkpointed first (unless an earlier unit already recorded it, so the
/// original is always the limit before the migration).
pub(super) async fn ensure_headroom<C: RecordsRaises>(
    env: &Env,
    step: &str,
    node_pools: &[String],
    earlier: &RaisedLimits,
    ctx: &mut UnitCtx<'_, '_, C>,
    client: &kube::Client,
) -> Result<(), StepError> {
    for np in node_pools {
        let (h, written) = headroom(client, np).await?;
        let (Some(to), Some(original)) = (h.raise_to(), written) else {
            continue;
        };
        if !earlier.contains_key(np) {
            ctx.save(|c| {
                c.raised().entry(np.clone()).or_insert(original);
            })?;
        }
        env.status(
            step,
            &format!(
                "NodePool {np} holds {} of its {} cpu limit: raising it to {} so a replacement can launch (put back at the end if the migrated nodes fit in it)",
                cores(h.used),
                cores(h.limit.unwrap_or(0)),
                cores(to)
            ),
        );
        set_cpu_limit(client, np, &CpuLimit::Text(cores(to)), "raise").await?;
    }
    Ok(())
}

/// Puts back every original limit in `raised` that the migrated nodes fit in.
pub(super) async fn restore_limits(
    env: &Env,
    step: &str,
    raised: &RaisedLimits,
    client: &kube::Client,
) -> Result<(), StepError> {
    for (np, original) in raised {
        let (h, _) = headroom(client, np).await?;
        if original.millis().is_some_and(|o| h.used > o) {
            // The migrated nodes hold fewer pods each, so the pool needs
            // more cpu than its old limit: putting it back would stop
            // Karpenter replacing any node.
            env.status(
                step,
                &format!(
                    "NodePool {np} now holds {} cpu, above its original limit {}: the raised limit stays; set spec.limits.cpu: \"{}\" in the NodePool's source (Helm values, Terraform) so the next deploy keeps it",
                    cores(h.used),
                    original,
                    cores(h.limit.unwrap_or(h.used))
                ),
            );
            continue;
        }
        env.status(step, &format!("restoring the cpu limit of NodePool {np}"));
        set_cpu_limit(client, np, original, "restore").await?;
    }
    Ok(())
}

/// The originals recorded by several units, the first record of each
/// NodePool winning (later units saw the raised value).
pub(super) fn merge_raised<'r>(records: impl IntoIterator<Item = &'r RaisedLimits>) -> RaisedLimits {
    let mut all = RaisedLimits::new();
    for r in records {
        for (np, original) in r {
            all.entry(np.clone()).or_insert_with(|| original.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A quantity as the API serves it (JSON).
    fn cpu_millis(v: &serde_json::Value) -> Option<u64> {
        serde_json::from_value::<CpuLimit>(v.clone()).ok()?.millis()
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_millis(&json!("10")), Some(10_000));
        assert_eq!(cpu_millis(&json!("1500m")), Some(1_500));
        assert_eq!(cpu_millis(&json!(2)), Some(2_000));
        assert_eq!(cpu_millis(&json!("0.5")), Some(500));
        assert_eq!(cpu_millis(&json!(null)), None);
        assert_eq!(cpu_millis(&json!("lots")), None);
        assert_eq!(cores(12_000), "12");
        assert_eq!(cores(1_500), "1500m");
    }

    #[test]
    fn a_limit_is_put_back_as_it_was_written() {
        for written in [json!(10), json!("10"), json!("1500m")] {
            let limit: CpuLimit = serde_json::from_value(written.clone()).unwrap();
            assert_eq!(serde_json::to_value(&limit).unwrap(), written);
            let back: CpuLimit = serde_json::from_value(written.clone()).unwrap();
            assert_eq!(back, limit);
        }
        assert_eq!(CpuLimit::Text("10".into()).to_string(), "\"10\"");
        assert_eq!(serde_json::from_value::<CpuLimit>(json!(null)).ok(), None);
    }

    #[test]
    fn the_first_recorded_original_wins() {
        let first: RaisedLimits = [("default".to_string(), CpuLimit::Text("10".into()))].into();
        let second: RaisedLimits = [
            ("default".to_string(), CpuLimit::Text("12".into())),
            ("gpu".to_string(), CpuLimit::Text("8".into())),
        ]
        .into();
        let all = merge_raised([&first, &second]);
        assert_eq!(all["default"], CpuLimit::Text("10".into()));
        assert_eq!(all["gpu"], CpuLimit::Text("8".into()));
    }

    #[test]
    fn headroom_raises_only_when_a_replacement_would_not_fit() {
        let at_limit = Headroom {
            limit: Some(10_000),
            used: 10_000,
            largest: 2_000,
        };
        assert_eq!(at_limit.raise_to(), Some(12_000));
        let room = Headroom {
            limit: Some(10_000),
            used: 8_000,
            largest: 2_000,
        };
        assert_eq!(room.raise_to(), None);
        let unlimited = Headroom {
            limit: None,
            used: 50_000,
            largest: 2_000,
        };
        assert_eq!(unlimited.raise_to(), None);
    }
}
