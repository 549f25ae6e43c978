//! Every AWS API operation podnet calls, in one table: which IAM action
//! authorizes it, which commands make it, and what it may be scoped to.
//! `podnet iam-policy` prints its policy from this table, and a test reads
//! the adapters' sources so that an operation they call cannot be missing
//! here (nor one listed here be called nowhere).
//!
//! Resource-level permissions and condition keys are the ones the Service
//! Authorization Reference lists for each action ("Actions, resources, and
//! condition keys for Amazon EC2" / "… for Amazon EKS"); describe calls
//! support none, so they take `*`.

/// Which of podnet's commands make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// `plan`, `init`, `verify`, `plan --rollback`: read-only.
    Plan,
    /// `apply` and `resume` (everything `plan` does too).
    Apply,
    /// `rollback` (everything `plan` does too).
    Rollback,
}

/// What an action may be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No resource-level permissions: `*`.
    Any,
    /// The cluster (`arn:aws:eks:…:cluster/NAME`).
    Cluster,
    /// The cluster's node groups.
    Nodegroups,
    /// The cluster's vpc-cni add-on.
    VpcCniAddon,
    /// The cluster, its node groups and its vpc-cni add-on (DescribeUpdate).
    ClusterUpdates,
    /// Resources of these EC2 types in the cluster's VPC (`ec2:Vpc`).
    InVpc(&'static [&'static str]),
    /// The VPC itself.
    Vpc,
    /// A subnet created with podnet's ownership tag (`aws:RequestTag`), in the VPC.
    NewTaggedSubnet,
    /// A subnet carrying podnet's ownership tag (`aws:ResourceTag`).
    TaggedSubnet,
    /// Launch templates (the node groups' own).
    LaunchTemplates,
    /// The account's Auto Scaling groups (self-managed node groups').
    AutoScalingGroups,
    /// Launching from the groups' launch templates, which EC2 Auto Scaling
    /// checks when a group is pointed at a template.
    LaunchFromTemplates,
    /// The account's IAM users and roles: the caller's own principal, which
    /// is not known when the policy is printed.
    Principals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// `ec2`, `eks`, `autoscaling` or `iam`: the IAM service prefix.
    pub service: &'static str,
    /// The API operation, as the adapters name it in errors.
    pub operation: &'static str,
    pub mutating: bool,
    pub phases: &'static [Phase],
    pub scope: Scope,
}

impl Action {
    /// `ec2:DescribeVpcs`.
    pub fn iam(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

const READ: &[Phase] = &[Phase::Plan, Phase::Apply, Phase::Rollback];
const APPLY: &[Phase] = &[Phase::Apply];
const ROLLBACK: &[Phase] = &[Phase::Rollback];
const BOTH: &[Phase] = &[Phase::Apply, Phase::Rollback];
/// Changes `plan` also asks about with `DryRun` (the permission check needs
/// the action itself).
const CHECKED: &[Phase] = &[Phase::Plan, Phase::Apply];

const fn ec2(operation: &'static str, mutating: bool, phases: &'static [Phase], scope: Scope) -> Action {
    Action {
        service: "ec2",
        operation,
        mutating,
        phases,
        scope,
    }
}

const fn iam(operation: &'static str, phases: &'static [Phase], scope: Scope) -> Action {
    Action {
        service: "iam",
        operation,
        mutating: false,
        phases,
        scope,
    }
}

const fn autoscaling(operation: &'static str, mutating: bool, phases: &'static [Phase], scope: Scope) -> Action {
    Action {
        service: "autoscaling",
        operation,
        mutating,
        phases,
        scope,
    }
}

const fn eks(operation: &'static str, mutating: bool, phases: &'static [Phase], scope: Scope) -> Action {
    Action {
        service: "eks",
        operation,
        mutating,
        phases,
        scope,
    }
}

/// Every operation, reads first.
pub const ACTIONS: &[Action] = &[
    ec2("DescribeVpcs", false, READ, Scope::Any),
    ec2("DescribeSubnets", false, READ, Scope::Any),
    ec2("DescribeRouteTables", false, READ, Scope::Any),
    ec2("DescribeSecurityGroups", false, READ, Scope::Any),
    ec2("DescribeSecurityGroupRules", false, READ, Scope::Any),
    ec2("DescribeVpcEndpoints", false, READ, Scope::Any),
    ec2("DescribeInstanceTypes", false, READ, Scope::Any),
    ec2("DescribeLaunchTemplates", false, BOTH, Scope::Any),
    // A custom-AMI node group's user data: read at plan, again before its
    // new version is made.
    ec2("DescribeLaunchTemplateVersions", false, BOTH, Scope::Any),
    ec2("DescribeNetworkInterfaces", false, ROLLBACK, Scope::Any),
    // Self-managed node groups: which group each node's instance is in,
    // and the groups' launch templates and instances.
    autoscaling("DescribeAutoScalingInstances", false, READ, Scope::Any),
    autoscaling("DescribeAutoScalingGroups", false, READ, Scope::Any),
    eks("DescribeCluster", false, READ, Scope::Cluster),
    eks("ListNodegroups", false, READ, Scope::Cluster),
    eks("DescribeNodegroup", false, READ, Scope::Nodegroups),
    eks("DescribeAddon", false, READ, Scope::VpcCniAddon),
    eks("DescribeUpdate", false, BOTH, Scope::ClusterUpdates),
    // Asks about the changes EC2's DryRun cannot (src/simulate.rs).
    iam("SimulatePrincipalPolicy", CHECKED, Scope::Principals),
    ec2("AssociateVpcCidrBlock", true, APPLY, Scope::Vpc),
    ec2(
        "AuthorizeSecurityGroupIngress",
        true,
        CHECKED,
        Scope::InVpc(&["security-group"]),
    ),
    ec2("CreateSubnet", true, CHECKED, Scope::NewTaggedSubnet),
    ec2("CreateTags", true, APPLY, Scope::InVpc(&["subnet"])),
    ec2(
        "AssociateRouteTable",
        true,
        &[Phase::Plan, Phase::Apply, Phase::Rollback],
        Scope::InVpc(&["route-table", "subnet"]),
    ),
    ec2(
        "ReplaceRouteTableAssociation",
        true,
        BOTH,
        Scope::InVpc(&["route-table", "subnet"]),
    ),
    ec2("CreateLaunchTemplateVersion", true, BOTH, Scope::LaunchTemplates),
    eks("UpdateAddon", true, BOTH, Scope::VpcCniAddon),
    eks("UpdateNodegroupVersion", true, BOTH, Scope::Nodegroups),
    autoscaling("UpdateAutoScalingGroup", true, BOTH, Scope::AutoScalingGroups),
    // Pointing a group at a launch template is authorized as
    // ec2:RunInstances on the template as well (EC2 Auto Scaling User
    // Guide, "Control Amazon EC2 launch template usage in Auto Scaling
    // groups").
    ec2("RunInstances", true, BOTH, Scope::LaunchFromTemplates),
    autoscaling(
        "TerminateInstanceInAutoScalingGroup",
        true,
        BOTH,
        Scope::AutoScalingGroups,
    ),
    ec2(
        "DeleteNetworkInterface",
        true,
        ROLLBACK,
        Scope::InVpc(&["network-interface"]),
    ),
    ec2(
        "RevokeSecurityGroupIngress",
        true,
        ROLLBACK,
        Scope::InVpc(&["security-group"]),
    ),
    ec2("DeleteSubnet", true, ROLLBACK, Scope::TaggedSubnet),
    ec2("DeleteTags", true, ROLLBACK, Scope::InVpc(&["subnet"])),
    ec2(
        "DisassociateRouteTable",
        true,
        ROLLBACK,
        Scope::InVpc(&["route-table", "subnet"]),
    ),
    ec2("DisassociateVpcCidrBlock", true, ROLLBACK, Scope::Vpc),
];

/// The table's entry for an operation.
pub fn find(service: &str, operation: &str) -> Option<&'static Action> {
    ACTIONS
        .iter()
        .find(|a| a.service == service && a.operation == operation)
}

/// The actions a command makes.
pub fn for_phase(phase: Phase) -> impl Iterator<Item = &'static Action> {
    ACTIONS.iter().filter(move |a| a.phases.contains(&phase))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `const …OP: &str = "…"` in the adapters, with its service.
    fn called() -> BTreeSet<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/aws");
        let files = [
            ("ec2", "ec2/sdk/reads.rs"),
            ("ec2", "ec2/sdk/writes.rs"),
            ("ec2", "ec2/sdk/removals.rs"),
            ("eks", "eks.rs"),
            ("iam", "access.rs"),
            ("autoscaling", "autoscaling.rs"),
        ];
        let mut out = BTreeSet::new();
        for (service, file) in files {
            let text = std::fs::read_to_string(root.join(file)).expect("adapter source");
            for line in text.lines() {
                // `const OP: &str = "DescribeVpcs";` and any other `…OP`
                // constant naming a second call in the same function.
                let line = line.trim();
                if line.starts_with("const ")
                    && let Some((_, rest)) = line.split_once("OP: &str = \"")
                {
                    let op = rest.split('"').next().unwrap_or_default();
                    out.insert((service.to_string(), op.to_string()));
                }
            }
        }
        // DescribeInstanceTypes lives with the instance table.
        let it = std::fs::read_to_string(root.join("instance_types.rs")).expect("instance_types.rs");
        if it.contains(".describe_instance_types()") {
            out.insert(("ec2".into(), "DescribeInstanceTypes".into()));
        }
        // UpdateAutoScalingGroup with a launch template is also authorized
        // as ec2:RunInstances on it.
        let asg = std::fs::read_to_string(root.join("autoscaling.rs")).expect("autoscaling.rs");
        if asg.contains(".update_auto_scaling_group()") {
            out.insert(("ec2".into(), "RunInstances".into()));
        }
        out
    }

    #[test]
    fn the_table_lists_exactly_the_operations_the_adapters_call() {
        let called = called();
        let listed: BTreeSet<(String, String)> = ACTIONS
            .iter()
            .map(|a| (a.service.to_string(), a.operation.to_string()))
            .collect();
        assert_eq!(
            called.difference(&listed).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "called but not in the table"
        );
        assert_eq!(
            listed.difference(&called).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "in the table but called nowhere"
        );
    }

    #[test]
    fn plan_makes_changes_only_as_dry_runs() {
        for a in ACTIONS {
            if a.phases.contains(&Phase::Plan) && a.mutating {
                assert!(
                    ["AuthorizeSecurityGroupIngress", "CreateSubnet", "AssociateRouteTable"].contains(&a.operation),
                    "{} is mutating and not a dry run of plan's",
                    a.iam()
                );
            }
            assert!(!a.phases.is_empty(), "{}", a.iam());
        }
        assert!(find("ec2", "CreateSubnet").is_some_and(|a| a.mutating));
    }
}
