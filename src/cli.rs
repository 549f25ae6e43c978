//! The command line, as clap types and nothing else: every flag, its help
//! text and its default. Commands in [`crate::commands`] receive these.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::capacity::CniVersion;
use crate::output::OutputFormat;

const ABOUT: &str = "Migrate a live EKS cluster to VPC CNI custom networking on a secondary CIDR, without an outage.";

const LONG_ABOUT: &str = "\
Migrate a live Amazon EKS cluster from \"pods share the node subnets\" to VPC CNI custom
networking on a secondary CIDR (100.64.0.0/16 by default): associate the CIDR, admit it in the
security groups your pods call, create per-AZ pod subnets, apply ENIConfigs, configure
Karpenter, enable custom networking on the vpc-cni addon, replace every node, and verify.

Start with a plan file: `podnet init --cluster NAME --region REGION` writes one from the
cluster (plans/example.toml documents every key):
  podnet -f my-cluster.toml validate     # check the file, offline
  podnet -f my-cluster.toml plan         # read-only: discover, check, show every change
  podnet -f my-cluster.toml apply        # confirm, then run step by step, checkpointed
  podnet -f my-cluster.toml resume       # continue after a crash or a failure
  podnet -f my-cluster.toml status       # what the journal says
  podnet -f my-cluster.toml verify       # is every pod on the pod CIDR?

Exit codes: 0 success (plan: no changes), 1 error or failed check, 2 plan has changes,
130 interrupted (resume with `podnet resume`).";

#[derive(Debug, Parser)]
#[command(name = "podnet", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The migration plan file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PLAN",
        global = true,
        default_value = "podnet.toml",
        env = "PODNET_FILE"
    )]
    pub file: PathBuf,

    /// EKS cluster name (overrides the plan file's [cluster] name).
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,

    /// AWS region (overrides the plan file's [cluster] region).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// AWS shared-config profile to use (as AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Reach Kubernetes through this kubeconfig instead of connecting from
    /// DescribeCluster with podnet's own EKS token (also when KUBECONFIG is
    /// set). Its server must be the cluster's endpoint, or podnet refuses.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub kube_context: Option<String>,

    /// Directory holding this cluster's plan, journal and lock
    /// [default: $XDG_STATE_HOME/podnet/<cluster>.<region>, i.e. ~/.local/state/podnet/…].
    #[arg(long, global = true, value_name = "DIR", env = "PODNET_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Keep the plan, journal and lock in S3 (s3://BUCKET/PREFIX), shared by
    /// every machine that names it: resume, status and rollback from any of
    /// them [default: the plan file's `[state] url`, else the local
    /// directory]. --state-dir then holds this machine's working copy.
    #[arg(long = "state", global = true, value_name = "URL", env = "PODNET_STATE")]
    pub state_url: Option<String>,

    /// Output format: human text, or one JSON document on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// More detail (repeat for debug logs of the AWS and Kubernetes calls).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// No progress bars or spinners (they are off anyway when stderr is not a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// No colour (also when NO_COLOR is set).
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Discover the cluster (read-only) and write a commented plan file for it: the secondary CIDR,
    /// pod subnets per AZ, every security group that admits the node subnets, Karpenter as found.
    #[command(after_help = "\
Examples:
  podnet init --cluster my-cluster --region eu-west-1                 # writes podnet.toml
  podnet init --cluster my-cluster --region eu-west-1 -f my-cluster.toml
  podnet init --cluster my-cluster --region eu-west-1 --force         # replace an existing file")]
    Init(InitArgs),
    /// Discover the cluster, run preflight checks, and show every change and its capacity impact (read-only).
    Plan(PlanArgs),
    /// Show the plan, ask for confirmation, then run it step by step with a journal.
    Apply(ApplyArgs),
    /// Continue an interrupted or failed apply from its journal (replays the saved plan; never re-plans).
    Resume(ResumeArgs),
    /// Undo the recorded apply: settings back, nodes replaced off custom networking, and what
    /// podnet created removed (journaled; run it again, or `podnet resume`, to continue).
    #[command(after_help = "\
Examples:
  podnet plan --rollback                 # see what it would do (read-only)
  podnet rollback                        # plan, confirm, run
  podnet rollback --auto-approve         # no prompt (CI); continues an unfinished rollback")]
    Rollback(RollbackArgs),
    /// Print the journal: every step, its state, times, outputs and last error.
    Status,
    /// Check that the cluster is fully on custom networking (exit 1 if not).
    Verify,
    /// Compute max pods per instance type, as amazon-eks-ami's max-pods-calculator.sh, plus Karpenter's view.
    MaxPods(MaxPodsArgs),
    /// Check a plan file statically: every problem with its field and a fix (no AWS calls).
    Validate,
    /// Release the apply lock left behind by a podnet that is no longer running.
    Unlock(UnlockArgs),
    /// Print the least-privilege IAM policy (JSON, for `aws iam create-policy`) a command needs,
    /// or with --rbac the Kubernetes ClusterRole for podnet's access entry.
    #[command(after_help = "\
Examples:
  podnet iam-policy --for apply --account 123456789012 --vpc-id vpc-0abc > podnet-apply.json
  aws iam create-policy --policy-name podnet-apply --policy-document file://podnet-apply.json
  podnet iam-policy --for rollback --rbac > podnet-clusterrole.yaml")]
    IamPolicy(IamPolicyArgs),
    /// Print a shell completion script for podnet's subcommands and flags.
    #[command(after_help = "\
Examples:
  source <(podnet completions bash)                          # this bash session
  podnet completions bash > ~/.local/share/bash-completion/completions/podnet
  podnet completions zsh > \"${fpath[1]}/_podnet\"
  podnet completions fish > ~/.config/fish/completions/podnet.fish")]
    Completions(CompletionsArgs),
    /// Print podnet's manual page (roff), e.g. `podnet man > podnet.1; man -l podnet.1`.
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct IamPolicyArgs {
    /// The command the policy is for (each also reads what `plan` reads).
    #[arg(long = "for", value_enum, default_value_t = PolicyFor::Apply)]
    pub command: PolicyFor,
    /// The AWS account id in the ARNs [default: any (`*`)].
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// The cluster's VPC: EC2 writes are limited to it (`ec2:Vpc`) [default: any VPC].
    #[arg(long, value_name = "VPC_ID")]
    pub vpc_id: Option<String>,
    /// The AWS partition of the ARNs.
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Print the Kubernetes ClusterRole (YAML) instead of the IAM policy.
    #[arg(long)]
    pub rbac: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyFor {
    Plan,
    Apply,
    Rollback,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Replace the plan file when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Show the rollback instead: the recorded apply undone in reverse, from its journal
    /// (read-only; stops with an error naming anything podnet did not create that it would
    /// have to remove).
    #[arg(long)]
    pub rollback: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Set an unfinished earlier apply aside and plan again from the cluster as it is now
    /// (instead of `podnet resume`, e.g. after fixing the plan file).
    #[arg(long)]
    pub replan: bool,
    /// Stop cleanly after this step (e.g. `create-pod-subnets` to do the AWS half now and the
    /// cutover later); `podnet resume` continues.
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Set aside a torn last journal line (left by a crash mid-write) and continue.
    #[arg(long)]
    pub repair_journal: bool,
    /// Stop cleanly after this step; `podnet resume` continues.
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Stop cleanly after this step; `podnet rollback` continues.
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Examples:
  podnet max-pods -i t3.medium --cni-custom-networking            # 12
  podnet max-pods -i m5.large --cni-prefix-delegation             # 110 (capped)
  podnet max-pods -i m5.large --cni-custom-networking --cni-prefix-delegation --show-max-allowed   # 290
  podnet -q max-pods -i t3.large --cni-custom-networking          # just the number, for scripts
  podnet max-pods -i c7i.large --from-ec2                         # ask DescribeInstanceTypes")]
pub struct MaxPodsArgs {
    /// Instance type (repeat, or separate with commas).
    #[arg(
        short = 'i',
        long = "instance-type",
        value_name = "TYPE",
        required = true,
        value_delimiter = ','
    )]
    pub instance_types: Vec<String>,

    /// Custom networking is on: the primary ENI serves no pods.
    #[arg(long)]
    pub cni_custom_networking: bool,

    /// Prefix delegation is on: a /28 per secondary IP (Nitro, VPC CNI >= 1.9).
    #[arg(long)]
    pub cni_prefix_delegation: bool,

    /// VPC CNI version, e.g. 1.19.2 (decides whether prefix delegation applies).
    #[arg(long, value_name = "X.Y.Z", default_value_t = CniVersion::ASSUMED, value_parser = parse_cni_version)]
    pub cni_version: CniVersion,

    /// Use at most this many ENIs for pods.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cni_max_eni: Option<u32>,

    /// Show the formula's value without the 110/250 cap.
    #[arg(long)]
    pub show_max_allowed: bool,

    /// Read the instance facts from EC2 DescribeInstanceTypes instead of the embedded table
    /// (honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_EC2).
    #[arg(long)]
    pub from_ec2: bool,

    /// reservedENIs for the Karpenter column [default: 1 with --cni-custom-networking, else 0].
    #[arg(long, value_name = "N")]
    pub karpenter_reserved_enis: Option<u32>,
}

fn parse_cni_version(s: &str) -> Result<CniVersion, String> {
    s.parse()
        .map_err(|e: crate::capacity::max_pods::BadCniVersion| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_go_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["podnet", "-f", "x.toml", "--output", "json", "validate"]).unwrap();
        let b = Cli::try_parse_from(["podnet", "validate", "-f", "x.toml", "--output", "json"]).unwrap();
        assert_eq!(a.global.file, b.global.file);
        assert_eq!(a.global.output, OutputFormat::Json);
        assert_eq!(b.global.output, OutputFormat::Json);
    }

    #[test]
    fn max_pods_flags() {
        let c = Cli::try_parse_from([
            "podnet",
            "max-pods",
            "-i",
            "t3.medium,m5.large",
            "--instance-type",
            "t3.large",
            "--cni-version",
            "v1.8.0",
        ])
        .unwrap();
        let Command::MaxPods(m) = c.command else { panic!() };
        assert_eq!(m.instance_types, ["t3.medium", "m5.large", "t3.large"]);
        assert_eq!(m.cni_version, CniVersion::new(1, 8, 0));
        let err =
            Cli::try_parse_from(["podnet", "max-pods", "-i", "t3.medium", "--cni-version", "latest"]).unwrap_err();
        assert!(err.to_string().contains("not a VPC CNI version"), "{err}");
        assert!(Cli::try_parse_from(["podnet", "max-pods"]).is_err());
    }
}
