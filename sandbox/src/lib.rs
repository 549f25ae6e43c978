//! podnet-sandbox: a rehearsal world for podnet. EC2 comes from moto (an
//! independent emulator) behind an auditing proxy; EKS and Kubernetes come
//! from this crate's own simulation, which kubectl, the AWS CLI and kube-rs
//! accept as the real thing. [`Sandbox`] starts everything on free loopback
//! ports, seeds a scenario, and tears it all down (moto included) on drop.
//!
//! ```no_run
//! let sb = podnet_sandbox::Sandbox::start(Default::default())?;
//! for (k, v) in sb.env() {
//!     println!("{k}={v}");
//! }
//! # Ok::<(), podnet_sandbox::SandboxError>(())
//! ```

pub mod auth;
pub mod autoscaling;
pub mod bench;
pub mod calls;
mod client_env;
pub mod clock;
pub mod control_plane;
pub mod controllers;
pub mod ec2proxy;
pub mod eks;
pub mod iam;
pub mod instance_types;
pub mod ipam;
pub mod kube;
pub mod moto;
pub mod scenario;
mod startup;
pub mod sts;
pub mod user_data;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use calls::{Call, Fault, Service};
pub use client_env::UNSET_VARS;
pub use clock::Clock;
pub use scenario::{Scenario, World};

use crate::calls::CallLog;
use crate::client_env::{shell_quote, write_atomic};
use crate::eks::{Eks, Timings};
use crate::ipam::Ipam;
use crate::kube::Store;
use crate::moto::Moto;

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Moto(#[from] moto::MotoError),
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error("seeding the scenario: {0}")]
    Seed(#[from] scenario::ec2::SeedError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] auth::tls::TlsError),
    #[error("--iam-policy: {0}")]
    IamPolicy(#[from] iam::PolicyError),
    #[error("the sandbox runtime stopped during startup")]
    Runtime,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub scenario: Scenario,
    /// Simulated seconds per real second (default 90).
    pub time_scale: f64,
    /// The venv holding moto (default: `$PODNET_VENV`, else `<repo>/.venv`).
    pub venv: Option<PathBuf>,
    /// Where the kubeconfig and AWS config files go. Default: a fresh
    /// temporary directory, removed on drop.
    pub state_dir: Option<PathBuf>,
    /// Run moto. Without it EC2 is absent and seeding makes ids up (for the
    /// bench and store-only tests).
    pub moto: bool,
    pub timings: Timings,
    /// Run the cluster's behaviours (scheduler, CNI, workloads, Karpenter,
    /// node group rollouts). Off, the cluster stays as seeded: only API
    /// writes change it.
    pub controllers: bool,
    pub behaviour: controllers::Behaviour,
    /// EC2's eventual consistency on the proxy: for this long (simulated)
    /// a new subnet is missing from `DescribeSubnets` and refused by id,
    /// and a new CIDR association stays `associating`. `None` (default):
    /// moto's immediate consistency. See [`Sandbox::set_ec2_lag`].
    pub ec2_lag: Option<std::time::Duration>,
    /// How long (simulated) before the control plane reaches a CIDR block
    /// associated after startup; `None`: the scenario's
    /// `[control_plane] cidr_recognition_minutes`. See
    /// [`Sandbox::set_cidr_recognition`].
    pub cidr_recognition: Option<std::time::Duration>,
    /// An IAM policy document the admin principal is held to from the
    /// start (see [`Sandbox::set_iam_policy`]); `None`: AdministratorAccess.
    pub iam_policy: Option<serde_json::Value>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            scenario: Scenario::seed(),
            time_scale: clock::DEFAULT_TIME_SCALE,
            venv: None,
            state_dir: None,
            moto: true,
            timings: Timings::default(),
            controllers: true,
            behaviour: controllers::Behaviour::default(),
            ec2_lag: None,
            cidr_recognition: None,
            iam_policy: None,
        }
    }
}

impl SandboxOptions {
    pub fn with_scenario(mut self, s: Scenario) -> Self {
        self.scenario = s;
        self
    }
}

/// A running sandbox. Dropping it stops the servers and moto.
pub struct Sandbox {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    handle: tokio::runtime::Handle,
    kube_url: String,
    eks_url: String,
    ec2_url: String,
    sts_url: String,
    s3_url: Option<String>,
    autoscaling_url: String,
    autoscaling: Arc<autoscaling::Groups>,
    moto_url: Option<String>,
    venv: Option<PathBuf>,
    tls: auth::tls::ClusterTls,
    auth: Arc<auth::Auth>,
    store: Arc<Store>,
    eks: Arc<Eks>,
    calls: Arc<CallLog>,
    clock: Clock,
    world: World,
    ipam: Arc<Mutex<Ipam>>,
    controllers: Option<Arc<controllers::Ctx>>,
    consistency: Arc<ec2proxy::Consistency>,
    control_plane: Arc<control_plane::ControlPlane>,
    scenario: Scenario,
    state_dir: PathBuf,
    remove_state: bool,
    kubeconfig: PathBuf,
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// Start a sandbox: moto, the three servers on free loopback ports, the
    /// scenario seeded. Blocks until ready (a few seconds for the seed). Works
    /// from synchronous code and from inside a tokio runtime alike: the
    /// sandbox runs on its own runtime thread.
    pub fn start(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let (state_dir, remove_state) = match &opts.state_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "podnet-sandbox-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                )),
                true,
            ),
        };
        // A policy IAM would refuse is refused before anything starts.
        if let Some(doc) = &opts.iam_policy {
            iam::Policy::from_value(doc)?;
        }
        std::fs::create_dir_all(state_dir.join("aws")).map_err(io_err(format!("creating {}", state_dir.display())))?;
        let venv = if opts.moto {
            Some(moto::find_venv(opts.venv.as_deref())?)
        } else {
            None
        };
        let moto = match &venv {
            Some(v) => Some(Moto::start(v)?),
            None => None,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<startup::Started, SandboxError>>();
        let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = startup::spawn(opts.clone(), moto, ready_tx, shut_rx)?;
        let started = match ready_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                if remove_state {
                    let _ = std::fs::remove_dir_all(&state_dir);
                }
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(SandboxError::Runtime);
            }
        };
        let (kubeconfig_path, env) = client_env::write_client_files(&state_dir, &opts.scenario, &started)?;
        let sb = Sandbox {
            shutdown: Some(shut_tx),
            thread: Some(thread),
            handle: started.handle,
            kube_url: started.kube_url,
            eks_url: started.eks_url,
            ec2_url: started.ec2_url,
            sts_url: started.sts_url,
            s3_url: started.s3_url,
            autoscaling_url: started.autoscaling_url,
            autoscaling: started.autoscaling,
            moto_url: started.moto_url,
            venv,
            tls: started.tls,
            auth: started.auth,
            store: started.store,
            eks: started.eks,
            calls: started.calls,
            clock: started.clock,
            world: started.world,
            ipam: started.ipam,
            controllers: started.controllers,
            consistency: started.consistency,
            control_plane: started.control_plane,
            scenario: opts.scenario,
            state_dir,
            remove_state,
            kubeconfig: kubeconfig_path,
            env,
        };
        if let Some(doc) = &opts.iam_policy {
            sb.set_iam_policy(doc)?;
        }
        Ok(sb)
    }

    /// [`Sandbox::start`] for async callers (runs it on a blocking thread).
    pub async fn start_async(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        tokio::task::spawn_blocking(move || Sandbox::start(opts))
            .await
            .unwrap_or(Err(SandboxError::Runtime))
    }

    /// The environment a client needs (the env file's variables).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The env file: `export` lines, after unsetting variables that would
    /// let a developer's own AWS session in.
    pub fn env_file_contents(&self) -> String {
        let mut out = String::from("# podnet-sandbox environment: `source` this file.\n");
        out.push_str(&format!("unset {}\n", UNSET_VARS.join(" ")));
        for (k, v) in &self.env {
            out.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        out
    }

    /// Write the env file atomically (temporary file, then rename).
    pub fn write_env_file(&self, path: &Path) -> Result<(), SandboxError> {
        write_atomic(path, &self.env_file_contents())
    }

    /// Apply the environment to a command (and clear what could leak in).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        for k in UNSET_VARS {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The Kubernetes API (`https://127.0.0.1:port`, certificate signed by
    /// [`Sandbox::kube_ca_pem`]).
    pub fn kube_url(&self) -> &str {
        &self.kube_url
    }

    /// The cluster CA (PEM), as `DescribeCluster` returns it (base64).
    pub fn kube_ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// The sandbox kubeconfig's static admin token.
    pub fn admin_token(&self) -> &str {
        self.auth.static_token()
    }

    /// Authentication and access entries: principals, token lifetime.
    pub fn auth(&self) -> &Arc<auth::Auth> {
        &self.auth
    }

    /// The sandbox's STS endpoint (`GetCallerIdentity`).
    /// The S3 proxy in front of moto's S3 (`AWS_ENDPOINT_URL_S3`).
    pub fn s3_url(&self) -> Option<&str> {
        self.s3_url.as_deref()
    }

    /// The Auto Scaling API (`AWS_ENDPOINT_URL_AUTO_SCALING`).
    pub fn autoscaling_url(&self) -> &str {
        &self.autoscaling_url
    }

    /// The Auto Scaling groups, as the service holds them.
    pub fn autoscaling_groups(&self) -> Vec<autoscaling::Group> {
        self.autoscaling.all()
    }

    pub fn sts_url(&self) -> &str {
        &self.sts_url
    }

    /// The EKS API, also serving `/_sandbox/calls` and `/_sandbox/faults`.
    pub fn eks_url(&self) -> &str {
        &self.eks_url
    }

    /// The EC2 endpoint clients use: the auditing proxy in front of moto.
    pub fn ec2_url(&self) -> &str {
        &self.ec2_url
    }

    /// moto itself (no audit): what the sandbox's own code talks to.
    pub fn moto_url(&self) -> Option<&str> {
        self.moto_url.as_deref()
    }

    /// The venv moto runs from (it also holds the AWS CLI and boto3).
    pub fn venv(&self) -> Option<&Path> {
        self.venv.as_deref()
    }

    pub fn cluster_name(&self) -> &str {
        &self.scenario.cluster
    }

    pub fn region(&self) -> &str {
        &self.scenario.region
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// What seeding created (ids, nodes, ENIs, addresses).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The sandbox's IP accounting per subnet.
    pub fn ipam(&self) -> &Arc<Mutex<Ipam>> {
        &self.ipam
    }

    /// The running controllers (their per-node network state, pending
    /// launches), when the sandbox runs them.
    pub fn controllers(&self) -> Option<&Arc<controllers::Ctx>> {
        self.controllers.as_ref()
    }

    /// The Kubernetes object store (typed access: `store().api::<Pod>()`).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn eks(&self) -> &Arc<Eks> {
        &self.eks
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The sandbox runtime, for spawning controllers next to the servers.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// An EC2 client talking to moto directly (not recorded in the call log).
    pub fn moto_client(&self) -> Option<aws_sdk_ec2::Client> {
        self.moto_url
            .as_deref()
            .map(|u| scenario::ec2::moto_client(u, &self.scenario.region))
    }

    /// Every recorded EC2, EKS and Kubernetes call, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.calls()
    }

    /// Recorded calls of one service that mutate.
    pub fn mutating_calls(&self, service: Service) -> Vec<Call> {
        self.calls
            .calls()
            .into_iter()
            .filter(|c| c.service == service && c.mutating)
            .collect()
    }

    pub fn clear_calls(&self) {
        self.calls.clear();
    }

    /// The control plane's reach into the VPC and its log of what it could
    /// not reach (webhook calls, APIService checks).
    pub fn control_plane(&self) -> &Arc<control_plane::ControlPlane> {
        &self.control_plane
    }

    /// Changes how long the control plane takes to recognise a CIDR block
    /// associated after startup (simulated; zero recognises them all now).
    pub fn set_cidr_recognition(&self, delay: std::time::Duration) {
        self.control_plane.set_delay(delay);
    }

    /// Turns EC2's eventual consistency on (`Some(lag)`, simulated) or off
    /// (see [`SandboxOptions::ec2_lag`]).
    pub fn set_ec2_lag(&self, lag: Option<std::time::Duration>) {
        self.consistency.set_lag(lag);
    }

    /// Fail the next `fault.count` calls of `fault.action` (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.calls.inject(fault);
    }

    /// Holds the admin principal (the env file's keys) to this IAM policy
    /// document from now on: the EC2 proxy and the EKS API evaluate each of
    /// its calls against it (see [`iam`]).
    pub fn set_iam_policy(&self, document: &serde_json::Value) -> Result<(), iam::PolicyError> {
        let admin = self
            .auth
            .principal_by_key(auth::ADMIN_ACCESS_KEY_ID)
            .map(|p| p.arn)
            .unwrap_or_default();
        self.auth.iam().attach(&admin, document)
    }

    /// Every principal back to `AdministratorAccess`.
    pub fn clear_iam_policies(&self) {
        self.auth.iam().clear();
    }

    pub fn clear_faults(&self) {
        self.calls.clear_faults();
    }

    /// The shared call log (for in-process servers added later).
    pub fn call_log(&self) -> &Arc<CallLog> {
        &self.calls
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.remove_state {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}
