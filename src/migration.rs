//! The migration as the commands see it: connect to AWS and Kubernetes,
//! discover, plan (findings, suggestions, capacity, every step's changes) as
//! one [`PlanDocument`], and run or resume an approved plan through the
//! engine. Commands only add flags, prompts and printing on top.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aws::{AwsClients, AwsTarget, EksTokenSigner};
use crate::discovery::{self, CustomNetworking, Discovery, DiscoveryError};
use crate::engine::{
    self, ChangeCounts, EngineError, Observer, RunOutcome, SavedPlan, StateDir, Step, StepCtx, StepError, StepPlan,
    fingerprint,
};
use crate::k8s;
use crate::k8s::connect::{ClusterEndpoint, KubeAccess};
use crate::planner::{self, CapacityReport, Finding, SgSuggestion};
use crate::spec::Spec;
use crate::steps::{self, Env, MigrationInputs, Waits};

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the saved plan's inputs do not decode ({0}); run `podnet apply --replan` to plan again")]
    SavedInputs(serde_json::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{error}\n  hint: {hint}")]
    Discovery { error: Box<DiscoveryError>, hint: String },
    #[error("cannot plan step {step}: {error}")]
    Observe { step: String, error: StepError },
    #[error(transparent)]
    Kube(#[from] k8s::KubeError),
}

/// Which cluster to connect to, and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub cluster: String,
    pub region: String,
    pub profile: Option<String>,
    pub kube: KubeAccess,
}

/// Adapts the AWS-side EKS token signer to the k8s adapter's token trait.
struct SignerTokens(EksTokenSigner);

#[async_trait::async_trait]
impl k8s::connect::TokenSource for SignerTokens {
    async fn token(&self) -> Result<String, tower::BoxError> {
        self.0.token().await.map_err(Into::into)
    }
}

/// The error for credentials the cluster does not accept (401), naming the
/// principal STS says they belong to and how to give it access.
async fn unauthorized(cfg: &aws_config::SdkConfig, target: &Target, e: k8s::KubeError) -> MigrationError {
    let cluster = &target.cluster;
    let message = match &target.kube {
        KubeAccess::Direct => {
            let principal = crate::aws::caller_identity(cfg)
                .await
                .unwrap_or_else(|_| "the principal of your AWS credentials".to_string());
            format!(
                "cluster {cluster} does not accept {principal} (HTTP 401 Unauthorized): it has no EKS access entry (or aws-auth mapping). Give it one, e.g.\n    aws eks create-access-entry --cluster-name {cluster} --principal-arn {principal}\n    aws eks associate-access-policy --cluster-name {cluster} --principal-arn {principal} --policy-arn arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy --access-scope type=cluster\n  (or a narrower policy granting what `podnet plan` lists as k8s.permission)"
            )
        }
        KubeAccess::Kubeconfig { .. } => format!(
            "cluster {cluster} does not accept the kubeconfig's credentials (HTTP 401 Unauthorized): refresh them (`aws eks update-kubeconfig --name {cluster}`), or drop --kubeconfig/--kube-context and unset KUBECONFIG to let podnet sign its own token"
        ),
    };
    MigrationError::Kube(k8s::KubeError {
        class: crate::engine::ErrorClass::Permission,
        action: e.action,
        message,
        status: e.status,
    })
}

/// Connects to the cluster's AWS account (standard chain) and to the
/// Kubernetes API of the cluster EKS describes: directly (endpoint, CA and
/// podnet's own EKS token) or through a kubeconfig whose server must be
/// that cluster's endpoint. Refuses before any change when it is not.
pub async fn connect(target: &Target, progress: Arc<dyn Observer>) -> Result<Env, MigrationError> {
    let cfg = crate::aws::sdk_config(&AwsTarget {
        region: Some(target.region.clone()),
        profile: target.profile.clone(),
    })
    .await;
    let aws = AwsClients::from_config(&cfg);
    let info = aws.eks.describe_cluster(&target.cluster).await.map_err(|e| {
        let error = discovery::DiscoveryError::from(e);
        MigrationError::Discovery {
            hint: error.hint(),
            error: Box::new(error),
        }
    })?;
    let endpoint = ClusterEndpoint {
        name: info.name.clone(),
        endpoint: info.endpoint.clone().unwrap_or_default(),
        certificate_authority: info.certificate_authority.clone(),
    };
    if endpoint.endpoint.is_empty() {
        return Err(MigrationError::Kube(k8s::KubeError {
            class: crate::engine::ErrorClass::Blocked,
            action: "connect".into(),
            message: format!(
                "EKS reports no endpoint for cluster {} (status {}): it is not ready to be migrated",
                info.name, info.status
            ),
            status: None,
        }));
    }
    let kube = match &target.kube {
        KubeAccess::Direct => {
            let signer = EksTokenSigner::new(&cfg, &target.region, &target.cluster).map_err(|e| {
                MigrationError::Kube(k8s::KubeError {
                    class: crate::engine::ErrorClass::Permission,
                    action: "sign an EKS token".into(),
                    message: e.to_string(),
                    status: None,
                })
            })?;
            k8s::connect::connect_direct(&endpoint, Arc::new(SignerTokens(signer)))?
        }
        KubeAccess::Kubeconfig { path, context } => {
            k8s::connect::connect_kubeconfig(&endpoint, path.clone(), context.clone()).await?
        }
    };
    let kube_user = match k8s::connect::probe(&kube).await {
        Ok(user) => user,
        Err(e) => return Err(unauthorized(&cfg, target, e).await),
    };
    Ok(Env {
        kube_user,
        aws,
        kube: Some(kube),
        waits: Waits::default(),
        progress,
    })
}

/// What discovery found, in brief.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverySummary {
    pub cluster: String,
    pub kubernetes_version: String,
    pub vpc_id: String,
    pub vpc_cidrs: Vec<String>,
    pub node_subnets: Vec<String>,
    pub node_groups: Vec<String>,
    pub nodes: usize,
    pub pods: usize,
    pub vpc_cni: String,
    pub custom_networking: CustomNetworking,
    pub karpenter: Option<String>,
    pub eniconfigs: Vec<String>,
}

fn summarize(spec: &Spec, d: &Discovery) -> DiscoverySummary {
    let node_subnets = d
        .node_subnets(spec)
        .iter()
        .flat_map(|(az, subnets)| {
            subnets
                .iter()
                .map(move |s| format!("{az}: {} {} ({} free)", s.id, s.cidr, s.available_ips))
        })
        .collect();
    let karpenter = d.kube.karpenter.as_ref().map(|k| match &k.controller {
        Some(c) => format!(
            "{}/{} ({} NodePool(s), {} NodeClaim(s), RESERVED_ENIS={})",
            c.namespace,
            c.deployment,
            k.nodepools.len(),
            k.nodeclaims.len(),
            c.reserved_enis.as_deref().unwrap_or("unset")
        ),
        None => format!("CRDs only ({} NodePool(s))", k.nodepools.len()),
    });
    DiscoverySummary {
        cluster: d.cluster.name.clone(),
        kubernetes_version: d.cluster.version.clone(),
        vpc_id: d.vpc.id.clone(),
        vpc_cidrs: d.vpc.live_cidrs().iter().map(|c| c.to_string()).collect(),
        node_subnets,
        node_groups: d
            .nodegroups
            .iter()
            .map(|g| format!("{} ({}×{})", g.name, g.desired_size, g.instance_types.join("/")))
            .collect(),
        nodes: d.kube.nodes.len(),
        pods: d.kube.pods.len(),
        vpc_cni: match (&d.addon, d.cni_version()) {
            (Some(a), _) => format!("addon {}", a.version),
            (None, Some(v)) => format!("self-managed {v}"),
            (None, None) => "not found".into(),
        },
        custom_networking: d.custom_networking(),
        karpenter,
        eniconfigs: d.kube.eniconfigs.iter().flatten().map(|e| e.name.clone()).collect(),
    }
}

/// Everything `plan` shows, as one stable document (`--output json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanDocument {
    pub cluster: String,
    pub region: String,
    pub discovery: DiscoverySummary,
    pub findings: Vec<Finding>,
    pub suggestions: Vec<SgSuggestion>,
    /// Empty when preflight found errors: nothing would run.
    pub steps: Vec<StepPlan>,
    pub summary: ChangeCounts,
    pub changes_pending: bool,
    pub capacity: CapacityReport,
    pub inputs: MigrationInputs,
    /// SHA-256 of the validated plan file.
    pub spec_fingerprint: String,
}

impl PlanDocument {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == planner::Severity::Error)
    }
}

/// One preflight error per permission the cluster denies, naming the
/// identity it sees and how to grant it.
fn permission_findings(report: &k8s::permissions::PermissionReport) -> Vec<planner::Finding> {
    let who = report
        .username
        .as_deref()
        .map_or("the identity podnet connects as".to_string(), |u| format!("\"{u}\""));
    report
        .denied
        .iter()
        .map(|n| {
            planner::Finding::error(
                "k8s.permission",
                format!("{who} may not {} on this cluster: podnet needs it to {}", n.describe(), n.why),
                format!(
                    "grant it before applying: an EKS access entry for this principal with AmazonEKSClusterAdminPolicy (`aws eks associate-access-policy`), or a ClusterRole allowing it bound to {who}; check with `kubectl auth can-i {}`",
                    n.describe()
                ),
            )
        })
        .collect()
}

/// Discovers, checks and plans; observes every step (read-only). Its
/// phases go to the run's progress reporter.
pub async fn prepare(env: &Env, spec: &Spec) -> Result<PlanDocument, MigrationError> {
    let doc = prepare_phases(env, spec).await;
    env.progress.phase_done();
    doc
}

fn kube_client(env: &Env) -> Result<&kube::Client, MigrationError> {
    env.kube.as_ref().ok_or_else(|| {
        MigrationError::Kube(k8s::KubeError {
            class: crate::engine::ErrorClass::Invalid,
            action: "connect".into(),
            message: "no Kubernetes client".into(),
            status: None,
        })
    })
}

/// One read-only pass over the cluster (what `plan` and `init` start from).
pub async fn discover(env: &Env, spec: &Spec) -> Result<discovery::Discovery, MigrationError> {
    discovery::discover(&env.aws, kube_client(env)?, spec, env.progress.as_ref())
        .await
        .map_err(|e| MigrationError::Discovery {
            hint: e.hint(),
            error: Box::new(e),
        })
}

async fn prepare_phases(env: &Env, spec: &Spec) -> Result<PlanDocument, MigrationError> {
    let progress = |m: &str| env.progress.phase(m);
    let d = discover(env, spec).await?;
    let planned = planner::plan(spec, &d);
    let mut doc = PlanDocument {
        cluster: spec.cluster.clone(),
        region: spec.region.clone(),
        discovery: summarize(spec, &d),
        findings: planned.findings.clone(),
        suggestions: planned.suggestions.clone(),
        steps: vec![],
        summary: ChangeCounts::default(),
        changes_pending: false,
        capacity: planned.capacity.clone(),
        inputs: planned.inputs.clone(),
        spec_fingerprint: fingerprint(spec),
    };
    progress("checking Kubernetes permissions");
    let perms = k8s::permissions::check(kube_client(env)?, env.kube_user.clone(), d.kube.karpenter.is_some()).await?;
    doc.findings.extend(permission_findings(&perms));
    if !planned.has_errors() {
        progress("asking EC2 whether these credentials may make the changes (DryRun)");
        doc.findings
            .extend(crate::dry_run::findings(env, &planned.inputs, &d).await);
        progress("asking IAM's policy simulator about the changes EC2 cannot dry-run");
        doc.findings
            .extend(crate::simulate::findings(env, &planned.inputs, &d).await);
    }
    if planned.has_errors() || doc.has_errors() {
        return Ok(doc);
    }
    progress("planning each step");
    let outputs = Default::default();
    for step in steps::build(&planned.inputs) {
        let ctx = StepCtx::planning(step.id(), &outputs);
        let plan = step.observe(env, &ctx).await.map_err(|error| MigrationError::Observe {
            step: step.id().to_string(),
            error: error.before_any_change(),
        })?;
        doc.summary.add(plan.counts());
        doc.steps.push(plan);
    }
    doc.changes_pending = doc.summary.total() > 0;
    Ok(doc)
}

/// A saved plan ready to run, built from its saved inputs alone: `apply`
/// runs the plan it just saved through this exactly as `resume` replays it,
/// so what was approved and saved is what runs, on either path.
pub struct Approved<'a> {
    saved: &'a SavedPlan,
    inputs: MigrationInputs,
    steps: Vec<Box<dyn Step<Env>>>,
}

impl<'a> Approved<'a> {
    /// Decodes the saved inputs and expands them into units; refuses a plan
    /// whose units differ from the ones it was saved with.
    pub fn load(saved: &'a SavedPlan) -> Result<Approved<'a>, MigrationError> {
        let inputs: MigrationInputs =
            serde_json::from_value(saved.inputs.clone()).map_err(MigrationError::SavedInputs)?;
        let steps = steps::build(&inputs);
        engine::check_plan(saved, &steps)?;
        Ok(Approved { saved, inputs, steps })
    }

    /// Runs it with a journal in `state`, under the wait bounds it was
    /// saved with (not today's plan file).
    pub async fn run(
        &self,
        mut env: Env,
        state: &StateDir,
        command: &str,
        stop_after: Option<&str>,
    ) -> Result<RunOutcome, MigrationError> {
        env.waits = self.inputs.waits;
        let observer = env.progress.clone();
        Ok(engine::execute(engine::Run {
            env: &env,
            steps: &self.steps,
            state,
            saved: self.saved,
            command,
            observer: observer.as_ref(),
            hooks: None,
            retry: Default::default(),
            stop_after,
        })
        .await?)
    }
}
