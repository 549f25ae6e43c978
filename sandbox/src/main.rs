//! The `podnet-sandbox` command: `up` runs a sandbox in the foreground
//! until SIGINT/SIGTERM and writes the env file once ready; `bench` measures
//! the store with a large scenario; `check` validates a scenario file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use podnet_sandbox::kube::resources::{NODE, POD};
use podnet_sandbox::{Sandbox, SandboxOptions, Scenario};

#[derive(Parser)]
#[command(
    name = "podnet-sandbox",
    version,
    about = "A simulated EKS cluster (EKS + Kubernetes APIs) over moto, for rehearsing podnet"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a sandbox and run until interrupted.
    Up {
        /// `seed` (BRIEF.md's reference scenario) or a scenario file.
        #[arg(long, default_value = "seed")]
        scenario: String,
        /// Where to write the env file [default: <state-dir>/env].
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = podnet_sandbox::clock::DEFAULT_TIME_SCALE)]
        time_scale: f64,
        /// The venv holding moto [default: $PODNET_VENV, else <repo>/.venv].
        #[arg(long)]
        venv: Option<PathBuf>,
        /// Directory for the kubeconfig, AWS config files and env file.
        #[arg(long, default_value = ".sandbox")]
        state_dir: PathBuf,
        /// Freeze the cluster: no scheduler, CNI, workload controllers,
        /// Karpenter or node group rollouts; only API writes change it.
        #[arg(long)]
        frozen: bool,
        /// EC2 eventual consistency: for this many simulated seconds a new
        /// subnet is missing from DescribeSubnets and refused by id
        /// (InvalidSubnetID.NotFound), and a new CIDR association stays
        /// `associating` [default: off].
        #[arg(long, value_name = "SECONDS")]
        ec2_lag: Option<u64>,
        /// Simulated minutes before the control plane reaches a VPC CIDR
        /// associated after startup (webhooks and aggregated APIs on pods
        /// in it time out until then); 0 turns it off [default: the
        /// scenario's `[control_plane] cidr_recognition_minutes`, 120].
        #[arg(long, value_name = "MINUTES")]
        cidr_recognition: Option<u64>,
        /// Hold the env file's principal to this IAM policy document
        /// (JSON, as `aws iam create-policy` takes): every EC2 and EKS call
        /// it makes is evaluated against it, and refused with the service's
        /// UnauthorizedOperation / AccessDeniedException when not allowed
        /// [default: AdministratorAccess].
        #[arg(long, value_name = "FILE")]
        iam_policy: Option<PathBuf>,
    },
    /// Seed a large scenario into a sandbox without moto and time the store.
    Bench {
        #[arg(long, default_value_os_t = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/large.toml")))]
        scenario: PathBuf,
        #[arg(long, default_value_t = 20)]
        iterations: u32,
    },
    /// Parse and validate a scenario file, and summarise it.
    Check { scenario: String },
}

fn lock_state_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        anyhow::bail!(
            "another podnet-sandbox is using {}; stop it or pass --state-dir",
            dir.display()
        );
    }
    Ok(f)
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

/// The hostile behaviours `up` turns on or changes.
struct Hostile {
    ec2_lag: Option<u64>,
    cidr_recognition: Option<u64>,
    iam_policy: Option<PathBuf>,
}

/// The `--iam-policy` document, read and checked before anything starts.
fn read_policy(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--iam-policy: reading {}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--iam-policy: {} is not a JSON policy document", path.display()))?;
    podnet_sandbox::iam::Policy::from_value(&doc).with_context(|| format!("--iam-policy: {}", path.display()))?;
    Ok(doc)
}

fn up(
    scenario: &str,
    env_file: Option<PathBuf>,
    time_scale: f64,
    venv: Option<PathBuf>,
    state_dir: PathBuf,
    frozen: bool,
    hostile: Hostile,
) -> Result<()> {
    let scenario = Scenario::load(scenario)?;
    let iam_policy = hostile.iam_policy.as_deref().map(read_policy).transpose()?;
    let state_dir = std::path::absolute(&state_dir).unwrap_or(state_dir);
    let _lock = lock_state_dir(&state_dir)?;
    let env_file = env_file.unwrap_or_else(|| state_dir.join("env"));
    let env_file = std::path::absolute(&env_file).unwrap_or(env_file);
    // A stale env file from a previous run must not look ready.
    let _ = std::fs::remove_file(&env_file);
    let started = Instant::now();
    let sb = Sandbox::start(SandboxOptions {
        scenario,
        time_scale,
        venv,
        state_dir: Some(state_dir.clone()),
        controllers: !frozen,
        ec2_lag: hostile.ec2_lag.map(std::time::Duration::from_secs),
        cidr_recognition: hostile
            .cidr_recognition
            .map(|m| std::time::Duration::from_secs(m.saturating_mul(60))),
        iam_policy,
        ..Default::default()
    })
    .context("starting the sandbox")?;
    sb.write_env_file(&env_file)?;
    let w = sb.world();
    println!(
        "podnet-sandbox: cluster {} ({}) ready in {:.1}s",
        sb.cluster_name(),
        sb.region(),
        started.elapsed().as_secs_f64()
    );
    println!("  Kubernetes API  {}", sb.kube_url());
    println!(
        "  EKS API         {}   (call log: {}/_sandbox/calls)",
        sb.eks_url(),
        sb.eks_url()
    );
    println!(
        "  EC2 (audited)   {}   -> moto {}",
        sb.ec2_url(),
        sb.moto_url().unwrap_or("-")
    );
    println!(
        "  VPC {} {}, {} nodes, {} pods",
        w.vpc_id,
        w.vpc_cidr,
        sb.store().count(NODE),
        sb.store().count(POD)
    );
    println!("  env file        {}", env_file.display());
    println!();
    println!("Use it from another shell:");
    println!("  source {}", env_file.display());
    println!("  kubectl get nodes");
    println!("  kubectl get pods -A -o wide");
    println!("  aws eks describe-addon --cluster-name \"$PODNET_SANDBOX_CLUSTER\" --addon-name vpc-cni");
    println!("  aws ec2 describe-subnets --filters Name=vpc-id,Values={}", w.vpc_id);
    if let Some(v) = sb.venv() {
        println!(
            "(the AWS CLI and boto3 are in {}/bin; kubectl older than 1.27 needs --validate=false for apply)",
            v.display()
        );
    }
    println!("Stop with Ctrl-C or SIGTERM.");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the signal runtime")?;
    rt.block_on(wait_for_signal())?;
    println!("podnet-sandbox: stopping");
    let _ = std::fs::remove_file(&env_file);
    drop(sb);
    Ok(())
}

fn bench(path: PathBuf, iterations: u32) -> Result<()> {
    let report = podnet_sandbox::bench::run(&path, iterations)?;
    print!("{report}");
    Ok(())
}

fn check(which: &str) -> Result<()> {
    let s = Scenario::load(which)?;
    let nodes: u32 = s.node_groups.iter().map(|g| g.size).sum::<u32>()
        + s.self_managed_groups.iter().map(|g| g.size).sum::<u32>()
        + s.karpenter
            .as_ref()
            .map_or(0, |k| k.nodes.iter().map(|n| n.count).sum());
    let replicas: u32 = s.workloads.iter().map(|w| w.replicas).sum();
    println!(
        "{which}: cluster {} in {}, VPC {}, {} zones, {nodes} nodes, {replicas} workload replicas",
        s.cluster,
        s.region,
        s.vpc_cidr,
        s.zones.len()
    );
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODNET_SANDBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Up {
            scenario,
            env_file,
            time_scale,
            venv,
            state_dir,
            frozen,
            ec2_lag,
            cidr_recognition,
            iam_policy,
        } => up(
            &scenario,
            env_file,
            time_scale,
            venv,
            state_dir,
            frozen,
            Hostile {
                ec2_lag,
                cidr_recognition,
                iam_policy,
            },
        ),
        Cmd::Bench { scenario, iterations } => bench(scenario, iterations),
        Cmd::Check { scenario } => check(&scenario),
    }
}
