//! The pod eviction subresource (`POST .../pods/NAME/eviction`) with the
//! apiserver's PodDisruptionBudget checks (k8s.io/kubernetes
//! `pkg/registry/core/pod/storage/eviction.go`;
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/>):
//! pods not running are deleted outright, more than one matching PDB is an
//! error, and an allowed eviction decrements disruptionsAllowed and records
//! the pod in disruptedPods before deleting it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::delete::delete_locked;
use super::derived::{deleting, labels_of, pdb_selector, pod_phase, pod_ready, set_status};
use super::meta::now_rfc3339;
use super::options::DeleteOptions;
use super::resources::{self, PDB, POD};
use super::status::{ApiError, success_status};
use super::store::{Store, Stored, meta_str};

impl Store {
    /// The pod eviction subresource (`POST .../pods/NAME/eviction`), with the
    /// apiserver's PDB checks. Returns the success `Status` (code 201).
    pub fn evict(&self, ns: &str, name: &str, body: &Value, dry_run: bool) -> Result<Value, ApiError> {
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != "Eviction"
        {
            return Err(ApiError::bad_request(format!("not a Eviction object: {kind}")));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && av != "policy/v1"
            && av != "policy/v1beta1"
        {
            return Err(ApiError::bad_request(format!("unsupported Eviction apiVersion {av}")));
        }
        if meta_str(body, "name") != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let mut opts = body
            .get("deleteOptions")
            .map(DeleteOptions::from_json)
            .unwrap_or_default();
        opts.dry_run |= dry_run;
        let mut inner = self.write();
        let pod = inner
            .get(POD, ns, name)
            .ok_or_else(|| ApiError::not_found(resources::get(POD), name))?;
        let created = || success_status(201, None);
        let phase = pod_phase(&pod.value);
        if matches!(phase, "Succeeded" | "Failed" | "Pending") || deleting(&pod.value) {
            delete_locked(&mut inner, POD, ns, name, &opts)?;
            return Ok(created());
        }
        let pdbs: Vec<Arc<Stored>> = inner
            .iter_ns(PDB, Some(ns))
            .filter(|p| pdb_selector(&p.value).is_some_and(|s| s.matches(labels_of(&pod.value))))
            .cloned()
            .collect();
        if pdbs.len() > 1 {
            return Err(ApiError::multiple_pdbs());
        }
        if let Some(pdb) = pdbs.first() {
            let st = pdb.value.get("status").cloned().unwrap_or(json!({}));
            let num = |k: &str| st.get(k).and_then(Value::as_i64).unwrap_or(0);
            let unready_ok =
                !pod_ready(&pod.value) && num("currentHealthy") >= num("desiredHealthy") && num("desiredHealthy") > 0;
            if !unready_ok {
                let generation = pdb
                    .value
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if num("observedGeneration") < generation {
                    return Err(ApiError::pdb_processing(pdb.name()));
                }
                let allowed = num("disruptionsAllowed");
                if allowed < 0 {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "poddisruptionbudgets.policy \"{}\" is forbidden: pdb disruptions allowed is negative",
                            pdb.name()
                        ),
                    ));
                }
                if allowed == 0 {
                    return Err(ApiError::pdb_forbids(
                        pdb.name(),
                        num("desiredHealthy"),
                        num("currentHealthy"),
                    ));
                }
                if !opts.dry_run {
                    let mut st = st.clone();
                    st["disruptionsAllowed"] = json!(allowed - 1);
                    if st.get("disruptedPods").is_none() {
                        st["disruptedPods"] = json!({});
                    }
                    st["disruptedPods"][name] = json!(now_rfc3339());
                    let key = (ns.to_string(), pdb.name().to_string());
                    set_status(&mut inner, PDB, &key, st);
                }
            }
        }
        delete_locked(&mut inner, POD, ns, name, &opts)?;
        Ok(created())
    }
}
