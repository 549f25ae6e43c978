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
pub mod bench;
pub mod calls;
pub mod clock;
pub mod controllers;
pub mod ec2proxy;
pub mod eks;
pub mod instance_types;
pub mod ipam;
pub mod kube;
pub mod moto;
pub mod scenario;
pub mod sts;
pub mod workloads;

use std::io::Write;

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use calls::{Call, Fault, Service};
pub use clock::Clock;
pub use scenario::{Scenario, World};

use crate::calls::CallLog;
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
    scenario: Scenario,
    state_dir: PathBuf,
    remove_state: bool,
    kubeconfig: PathBuf,
    env: Vec<(String, String)>,
}

struct Started {
    handle: tokio::runtime::Handle,
    kube_url: String,
    eks_url: String,
    ec2_url: String,
    sts_url: String,
    tls: auth::tls::ClusterTls,
    auth: Arc<auth::Auth>,
    moto_url: Option<String>,
    store: Arc<Store>,
    eks: Arc<Eks>,
    calls: Arc<CallLog>,
    clock: Clock,
    world: World,
    ipam: Arc<Mutex<Ipam>>,
    controllers: Option<Arc<controllers::Ctx>>,
}

async fn bind(what: &str) -> Result<(tokio::net::TcpListener, String), SandboxError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io_err(format!("binding the {what} port")))?;
    let addr = l.local_addr().map_err(io_err(format!("reading the {what} port")))?;
    Ok((l, addr.to_string()))
}

fn serve(listener: tokio::net::TcpListener, router: axum::Router, stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut stop = stop;
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("server stopped: {e}");
        }
    });
}

async fn startup(
    opts: &SandboxOptions,
    moto: Option<&Moto>,
    api: tokio::runtime::Handle,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Started, SandboxError> {
    let s = &opts.scenario;
    let calls = Arc::new(CallLog::default());
    let store = Arc::new(Store::new());
    let clock = Clock::new(opts.time_scale);
    let (kube_l, kube_addr) = bind("Kubernetes API").await?;
    let (eks_l, eks_addr) = bind("EKS API").await?;
    let (ec2_l, ec2_addr) = bind("EC2 proxy").await?;
    let (sts_l, sts_addr) = bind("STS").await?;
    let kube_url = format!("https://{kube_addr}");
    let tls = auth::tls::generate()?;
    let auth = Arc::new(auth::Auth::new(&s.cluster, &s.region, scenario::seed::ACCOUNT));
    auth.add_sts_host(&sts_addr);
    let eks = Arc::new(Eks::new(
        store.clone(),
        &s.region,
        scenario::seed::ACCOUNT,
        clock.clone(),
        opts.timings.clone(),
    ));
    auth::tls::serve(
        &api,
        kube_l,
        kube::router(store.clone(), calls.clone(), kube_addr.clone(), auth.clone()),
        &tls,
        stop.clone(),
    );
    serve(
        sts_l,
        sts::router(auth.clone(), calls.clone(), scenario::seed::ACCOUNT),
        stop.clone(),
    );
    serve(eks_l, eks::handlers::router(eks.clone(), calls.clone()), stop.clone());
    if let Some(m) = moto {
        serve(
            ec2_l,
            ec2proxy::router(format!("127.0.0.1:{}", m.port), calls.clone()),
            stop.clone(),
        );
    } else {
        drop(ec2_l);
    }
    let client = moto.map(|m| scenario::ec2::moto_client(&m.endpoint, &s.region));
    let seeded = scenario::seed::seed(scenario::seed::SeedInput {
        scenario: s,
        ec2: client.as_ref(),
        store: &store,
        eks: &eks,
        kube_endpoint: &kube_url,
        certificate_authority: &base64::engine::general_purpose::STANDARD.encode(tls.ca_pem.as_bytes()),
    })
    .await?;
    let ipam = Arc::new(Mutex::new(seeded.ipam));
    let ctl = opts.controllers.then(|| {
        Arc::new(controllers::Ctx::new(
            store.clone(),
            eks.clone(),
            client.clone(),
            ipam.clone(),
            clock.clone(),
            s.clone(),
            seeded.world.clone(),
            opts.behaviour.clone(),
        ))
    });
    if let Some(c) = &ctl {
        tokio::spawn(controllers::run(c.clone(), stop.clone()));
    }
    Ok(Started {
        handle: tokio::runtime::Handle::current(),
        kube_url,
        eks_url: format!("http://{eks_addr}"),
        ec2_url: format!("http://{ec2_addr}"),
        sts_url: format!("http://{sts_addr}"),
        tls,
        auth,
        moto_url: moto.map(|m| m.endpoint.clone()),
        store,
        eks,
        calls,
        clock,
        world: seeded.world,
        ipam,
        controllers: ctl,
    })
}

fn write_atomic(path: &Path, contents: &str) -> Result<(), SandboxError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(format!("writing {}", tmp.display())))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming {} to {}", tmp.display(), path.display())))
}

/// The sandbox's kubeconfig: the cluster CA (as `aws eks update-kubeconfig`
/// writes it) and the static admin token.
fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: podnet-sandbox\n    namespace: default\ncurrent-context: {cluster}\npreferences: {{}}\nusers:\n- name: podnet-sandbox\n  user:\n    token: {token}\n"
    )
}

/// Variables the env file unsets so a developer's own AWS session cannot
/// leak into the sandbox.
pub const UNSET_VARS: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
];

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c)) && !s.is_empty() {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn runtime(name: &str, workers: usize) -> Result<tokio::runtime::Runtime, SandboxError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(io_err(format!("building the {name} runtime")))
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
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Started, SandboxError>>();
        let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_opts = opts.clone();
        let thread = std::thread::Builder::new()
            .name("podnet-sandbox".into())
            .spawn(move || {
                let rt = match runtime("podnet-sandbox-rt", 2) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                // The Kubernetes API gets a runtime of its own: a busy
                // controller pass (600 pods on a debug build) must never
                // hold up a TLS handshake past a client's timeout (Go's is
                // 10 s).
                let api_rt = match runtime("podnet-sandbox-api", 1) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let started = rt.block_on(startup(&thread_opts, moto.as_ref(), api_rt.handle().clone(), stop_rx));
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    rt.block_on(async {
                        let _ = shut_rx.await;
                    });
                }
                let _ = stop_tx.send(true);
                rt.shutdown_timeout(std::time::Duration::from_secs(2));
                api_rt.shutdown_timeout(std::time::Duration::from_secs(2));
                drop(moto);
            })
            .map_err(io_err("starting the sandbox thread"))?;
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
        let s = &opts.scenario;
        let kubeconfig_path = state_dir.join("kubeconfig");
        write_atomic(
            &kubeconfig_path,
            &kubeconfig(
                &s.cluster,
                &started.kube_url,
                &started.tls.ca_pem,
                started.auth.static_token(),
            ),
        )?;
        let aws_config = state_dir.join("aws").join("config");
        write_atomic(
            &aws_config,
            &format!(
                "[default]\nregion = {}\noutput = json\nmax_attempts = 1\nretry_mode = standard\n",
                s.region
            ),
        )?;
        let aws_creds = state_dir.join("aws").join("credentials");
        write_atomic(
            &aws_creds,
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )?;
        let p = |x: &Path| x.display().to_string();
        let mut env = vec![
            ("AWS_ENDPOINT_URL_EC2".to_string(), started.ec2_url.clone()),
            ("AWS_ENDPOINT_URL_EKS".to_string(), started.eks_url.clone()),
            ("AWS_ENDPOINT_URL_STS".to_string(), started.sts_url.clone()),
            ("AWS_REGION".to_string(), s.region.clone()),
            ("AWS_DEFAULT_REGION".to_string(), s.region.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
            ("AWS_CONFIG_FILE".to_string(), p(&aws_config)),
            ("AWS_SHARED_CREDENTIALS_FILE".to_string(), p(&aws_creds)),
            ("AWS_MAX_ATTEMPTS".to_string(), "1".to_string()),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
            ("AWS_PAGER".to_string(), String::new()),
            ("KUBECONFIG".to_string(), p(&kubeconfig_path)),
            ("PODNET_SANDBOX_CLUSTER".to_string(), s.cluster.clone()),
            (
                "PODNET_SANDBOX_CONTROL".to_string(),
                format!("{}/_sandbox", started.eks_url),
            ),
        ];
        if started.moto_url.is_none() {
            env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_EC2");
        }
        Ok(Sandbox {
            shutdown: Some(shut_tx),
            thread: Some(thread),
            handle: started.handle,
            kube_url: started.kube_url,
            eks_url: started.eks_url,
            ec2_url: started.ec2_url,
            sts_url: started.sts_url,
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
            scenario: opts.scenario,
            state_dir,
            remove_state,
            kubeconfig: kubeconfig_path,
            env,
        })
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

    /// Fail the next `fault.count` calls of `fault.action` (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.calls.inject(fault);
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
