//! The least-privilege IAM policy and Kubernetes ClusterRole a command
//! needs, rendered from the two tables of what podnet calls: AWS operations
//! ([`crate::aws::actions`]) and Kubernetes verbs
//! ([`crate::k8s::permissions`]). Pure, so the rendering is unit-tested;
//! `podnet iam-policy` prints it.
//!
//! Scoping follows the Service Authorization Reference: EKS actions take
//! the cluster's, node groups' and add-on's ARNs; EC2 describe calls take
//! `*`; EC2 writes are limited to the cluster's VPC (`ec2:Vpc`), subnets are
//! created only with podnet's ownership tag (`aws:RequestTag`) and deleted
//! only while they carry it (`aws:ResourceTag`); the plan's permission
//! check may ask IAM's simulator about the account's users and roles.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::aws::actions::{self, Phase, Scope};
use crate::k8s::permissions::{NEEDS, Need, ROLLBACK_NEEDS};
use crate::spec::OWNER_TAG;

/// Whose resources the policy names. Unknown parts are `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster: String,
    pub region: String,
    pub account: Option<String>,
    pub vpc_id: Option<String>,
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// Shared state: the bucket and prefix (`--state`, `[state] url`).
    pub state: Option<(String, String)>,
}

impl Target {
    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition,
            self.region,
            self.account.as_deref().unwrap_or("*")
        )
    }

    fn vpc_arn(&self) -> String {
        self.arn("ec2", &format!("vpc/{}", self.vpc_id.as_deref().unwrap_or("*")))
    }

    /// The `ec2:Vpc` condition, when the VPC is known.
    fn in_vpc(&self) -> Option<Value> {
        self.vpc_id
            .as_ref()
            .map(|_| json!({ "StringEquals": { "ec2:Vpc": self.vpc_arn() } }))
    }
}

/// The phases a command's policy covers: its own (the table lists the reads
/// under every command, and `plan`'s dry runs under `plan` and `apply`
/// only, since `rollback` makes none).
pub fn phases(command: Phase) -> Vec<Phase> {
    vec![command]
}

fn sid(scope: &Scope) -> String {
    match scope {
        Scope::Any => "Describe".into(),
        Scope::Cluster => "EksCluster".into(),
        Scope::Nodegroups => "EksNodegroups".into(),
        Scope::VpcCniAddon => "EksVpcCniAddon".into(),
        Scope::ClusterUpdates => "EksUpdates".into(),
        Scope::InVpc(types) => format!(
            "InVpc{}",
            types
                .iter()
                .map(|t| t.split('-').map(capitalize).collect::<String>())
                .collect::<String>()
        ),
        Scope::Vpc => "VpcCidrBlocks".into(),
        Scope::NewTaggedSubnet => "CreatePodSubnets".into(),
        Scope::TaggedSubnet => "DeletePodSubnets".into(),
        Scope::LaunchTemplates => "LaunchTemplateVersions".into(),
        Scope::AutoScalingGroups => "SelfManagedNodeGroups".into(),
        Scope::LaunchFromTemplates => "LaunchFromNodeTemplates".into(),
        Scope::Principals => "SimulateOwnPermissions".into(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The statements for one scope's actions.
fn statements(scope: &Scope, actions: Vec<String>, t: &Target) -> Vec<Value> {
    let statement = |sid: String, resource: Value, condition: Option<Value>| {
        let mut s = json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource });
        if let Some(c) = condition {
            s["Condition"] = c;
        }
        s
    };
    let cluster = t.arn("eks", &format!("cluster/{}", t.cluster));
    let nodegroups = t.arn("eks", &format!("nodegroup/{}/*/*", t.cluster));
    let addon = t.arn("eks", &format!("addon/{}/vpc-cni/*", t.cluster));
    let typed = |types: &[&str]| -> Vec<String> { types.iter().map(|ty| t.arn("ec2", &format!("{ty}/*"))).collect() };
    match scope {
        Scope::Any => vec![statement(sid(scope), json!("*"), None)],
        Scope::Cluster => vec![statement(sid(scope), json!(cluster), None)],
        Scope::Nodegroups => vec![statement(sid(scope), json!(nodegroups), None)],
        Scope::VpcCniAddon => vec![statement(sid(scope), json!(addon), None)],
        Scope::ClusterUpdates => vec![statement(sid(scope), json!([cluster, nodegroups, addon]), None)],
        Scope::InVpc(types) => vec![statement(sid(scope), json!(typed(types)), t.in_vpc())],
        Scope::Vpc => vec![statement(sid(scope), json!(t.vpc_arn()), None)],
        // CreateSubnet is authorized against the VPC and the new subnet:
        // the subnet only with podnet's tag in the request. Tags given at
        // creation are authorized once more as ec2:CreateTags with
        // ec2:CreateAction ("Grant permission to tag Amazon EC2 resources
        // during creation", Amazon EC2 User Guide).
        Scope::NewTaggedSubnet => vec![
            statement(format!("{}InVpc", sid(scope)), json!(t.vpc_arn()), None),
            statement(
                sid(scope),
                json!(typed(&["subnet"])),
                Some(json!({ "StringEquals": { format!("aws:RequestTag/{OWNER_TAG}"): t.cluster } })),
            ),
            json!({
                "Sid": "TagPodSubnetsOnCreate",
                "Effect": "Allow",
                "Action": [TAG_ON_CREATE],
                "Resource": typed(&["subnet"]),
                "Condition": { "StringEquals": {
                    "ec2:CreateAction": "CreateSubnet",
                    format!("aws:RequestTag/{OWNER_TAG}"): t.cluster,
                } },
            }),
        ],
        Scope::TaggedSubnet => vec![statement(
            sid(scope),
            json!(typed(&["subnet"])),
            Some(json!({ "StringEquals": { format!("aws:ResourceTag/{OWNER_TAG}"): t.cluster } })),
        )],
        Scope::LaunchTemplates => vec![statement(sid(scope), json!(typed(&["launch-template"])), None)],
        // UpdateAutoScalingGroup with a launch template is authorized as
        // ec2:RunInstances on every resource a launch from it would use
        // (AMI, subnet, security groups, interfaces, volumes, the instance),
        // so AWS's own example grants it on "*"; podnet never calls it. A
        // template with tag specifications also needs ec2:CreateTags at
        // launch, and one with an instance profile iam:PassRole to EC2
        // (EC2 Auto Scaling User Guide, "Control Amazon EC2 launch template
        // usage in Auto Scaling groups").
        Scope::LaunchFromTemplates => vec![
            statement(sid(scope), json!("*"), None),
            json!({
                "Sid": "TagInstancesOnLaunch",
                "Effect": "Allow",
                "Action": [TAG_ON_CREATE],
                "Resource": "*",
                "Condition": { "StringEquals": { "ec2:CreateAction": "RunInstances" } },
            }),
            json!({
                "Sid": "PassNodeInstanceProfileRole",
                "Effect": "Allow",
                "Action": [PASS_ROLE],
                "Resource": format!("arn:{}:iam::{}:role/*", t.partition, t.account.as_deref().unwrap_or("*")),
                "Condition": { "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } },
            }),
        ],
        // Auto Scaling group ARNs carry a generated id before the name.
        Scope::AutoScalingGroups => vec![statement(
            sid(scope),
            json!(t.arn("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*")),
            None,
        )],
        // IAM ARNs have no region. The simulator is asked about the
        // caller's own principal, any of the account's users and roles.
        Scope::Principals => {
            let principal = |kind: &str| {
                format!(
                    "arn:{}:iam::{}:{kind}/*",
                    t.partition,
                    t.account.as_deref().unwrap_or("*")
                )
            };
            vec![statement(
                sid(scope),
                json!([principal("user"), principal("role")]),
                None,
            )]
        }
    }
}

/// The action EC2 authorizes again for tags given at creation.
const TAG_ON_CREATE: &str = "ec2:CreateTags";

/// Handing a launch template's instance profile role to EC2.
const PASS_ROLE: &str = "iam:PassRole";

/// The actions a scope's statements allow beyond the scope's own.
fn implied(scope: &Scope) -> &'static [&'static str] {
    match scope {
        Scope::NewTaggedSubnet => &[TAG_ON_CREATE],
        Scope::LaunchFromTemplates => &[TAG_ON_CREATE, PASS_ROLE],
        _ => &[],
    }
}

/// The IAM policy document for `command`.
pub fn policy(command: Phase, t: &Target) -> Value {
    let phases = phases(command);
    let mut by_scope: Vec<(Scope, BTreeSet<String>)> = vec![];
    for a in actions::ACTIONS
        .iter()
        .filter(|a| a.phases.iter().any(|p| phases.contains(p)))
    {
        match by_scope.iter_mut().find(|(s, _)| *s == a.scope) {
            Some((_, set)) => {
                set.insert(a.iam());
            }
            None => by_scope.push((a.scope, [a.iam()].into())),
        }
    }
    let mut statements: Vec<Value> = by_scope
        .iter()
        .flat_map(|(scope, set)| statements(scope, set.iter().cloned().collect(), t))
        .collect();
    statements.extend(shared_state(command, t));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Shared state's S3 calls (`aws::s3`): reading and listing for every
/// command (status, plan --rollback), writing and deleting objects (journal
/// records, the lock, the archive) for apply and rollback, all under the
/// state's prefix.
fn shared_state(command: Phase, t: &Target) -> Vec<Value> {
    let Some((bucket, prefix)) = &t.state else {
        return vec![];
    };
    let p = &t.partition;
    let keys = if prefix.is_empty() {
        format!("arn:{p}:s3:::{bucket}/*")
    } else {
        format!("arn:{p}:s3:::{bucket}/{prefix}/*")
    };
    let listed = if prefix.is_empty() {
        "*".to_string()
    } else {
        format!("{prefix}/*")
    };
    let mut objects = vec!["s3:GetObject"];
    if command != Phase::Plan {
        objects.extend(["s3:PutObject", "s3:DeleteObject"]);
    }
    vec![
        json!({ "Sid": "SharedStateObjects", "Effect": "Allow", "Action": objects, "Resource": keys }),
        // IfExists: reading a key that does not exist (no lock yet, no plan)
        // is answered 404 only to a caller with s3:ListBucket on the bucket,
        // else 403 (GetObject, "Permissions", S3 API Reference); that check
        // carries no s3:prefix.
        json!({
            "Sid": "SharedStateList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": format!("arn:{p}:s3:::{bucket}"),
            "Condition": { "StringLikeIfExists": { "s3:prefix": listed } },
        }),
    ]
}

/// Every IAM action the policy for `command` allows.
pub fn allowed(command: Phase) -> BTreeSet<String> {
    let phases = phases(command);
    actions::ACTIONS
        .iter()
        .filter(|a| a.phases.iter().any(|p| phases.contains(p)))
        .flat_map(|a| std::iter::once(a.iam()).chain(implied(&a.scope).iter().map(|s| s.to_string())))
        .collect()
}

/// The Kubernetes ClusterRole (YAML) the identity podnet runs as needs for
/// `command`, from the permission table the preflight checks.
pub fn cluster_role(command: Phase, name: &str) -> String {
    let needs: Vec<&Need> = match command {
        Phase::Plan => NEEDS.iter().filter(|n| n.verb == "list" || n.verb == "get").collect(),
        Phase::Apply => NEEDS.iter().collect(),
        Phase::Rollback => NEEDS.iter().chain(ROLLBACK_NEEDS).collect(),
    };
    let mut rules: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for n in needs {
        let resource = if n.subresource.is_empty() {
            n.resource.to_string()
        } else {
            format!("{}/{}", n.resource, n.subresource)
        };
        rules.entry((n.group.to_string(), resource)).or_default().insert(n.verb);
    }
    let mut out =
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules:\n");
    for ((group, resource), verbs) in rules {
        let verbs: Vec<String> = verbs.iter().map(|v| format!("\"{v}\"")).collect();
        out.push_str(&format!(
            "  - apiGroups: [\"{group}\"]\n    resources: [\"{resource}\"]\n    verbs: [{}]\n",
            verbs.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(vpc: Option<&str>) -> Target {
        Target {
            cluster: "podnet-demo".into(),
            region: "ap-northeast-2".into(),
            account: Some("123456789012".into()),
            vpc_id: vpc.map(str::to_string),
            partition: "aws".into(),
            state: None,
        }
    }

    #[test]
    fn shared_state_adds_its_prefix_and_only_apply_and_rollback_write() {
        let t = Target {
            state: Some(("acme-state".into(), "prod".into())),
            ..target(None)
        };
        let apply = policy(Phase::Apply, &t);
        let objects = apply["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "SharedStateObjects")
            .expect("state objects")
            .clone();
        assert_eq!(objects["Resource"], "arn:aws:s3:::acme-state/prod/*");
        assert!(objects["Action"].as_array().unwrap().contains(&json!("s3:PutObject")));
        let plan = policy(Phase::Plan, &t);
        assert!(!plan.to_string().contains("s3:PutObject"), "{plan}");
        assert!(plan.to_string().contains("\"s3:prefix\":\"prod/*\""), "{plan}");
    }

    fn actions_of(p: &Value) -> BTreeSet<String> {
        p["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn the_plan_policy_reads_and_allows_only_the_changes_plan_dry_runs() {
        let p = policy(Phase::Plan, &target(None));
        for a in actions_of(&p) {
            let op = a.split(':').nth(1).unwrap_or_default();
            assert!(
                op.starts_with("Describe")
                    || op.starts_with("List")
                    || [
                        "AuthorizeSecurityGroupIngress",
                        "CreateSubnet",
                        "AssociateRouteTable",
                        "CreateTags",
                        "SimulatePrincipalPolicy"
                    ]
                    .contains(&op),
                "{a}"
            );
        }
        assert_eq!(actions_of(&p), allowed(Phase::Plan));
    }

    #[test]
    fn writes_are_scoped_to_the_cluster_the_vpc_and_podnets_tag() {
        let p = policy(Phase::Rollback, &target(Some("vpc-0abc")));
        let by_sid = |sid: &str| -> Value {
            p["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["Sid"] == sid)
                .cloned()
                .unwrap_or_else(|| panic!("statement {sid}: {p:#}"))
        };
        assert_eq!(
            by_sid("DeletePodSubnets")["Condition"]["StringEquals"]["aws:ResourceTag/podnet.io/cluster"],
            "podnet-demo"
        );
        assert_eq!(
            by_sid("EksVpcCniAddon")["Resource"],
            "arn:aws:eks:ap-northeast-2:123456789012:addon/podnet-demo/vpc-cni/*"
        );
        assert_eq!(
            by_sid("InVpcSecurityGroup")["Condition"]["StringEquals"]["ec2:Vpc"],
            "arn:aws:ec2:ap-northeast-2:123456789012:vpc/vpc-0abc"
        );
        assert!(actions_of(&p).contains("ec2:DisassociateVpcCidrBlock"));
        assert!(!actions_of(&p).contains("ec2:CreateSubnet"), "rollback creates nothing");
        let apply = policy(Phase::Apply, &target(Some("vpc-0abc")));
        assert_eq!(
            apply["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["Sid"] == "CreatePodSubnets")
                .expect("CreatePodSubnets")["Condition"]["StringEquals"]["aws:RequestTag/podnet.io/cluster"],
            "podnet-demo"
        );
        let on_create = apply["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "TagPodSubnetsOnCreate")
            .expect("tagging on creation");
        assert_eq!(
            on_create["Condition"]["StringEquals"]["ec2:CreateAction"],
            "CreateSubnet"
        );
        assert_eq!(on_create["Action"], json!(["ec2:CreateTags"]));
    }

    #[test]
    fn self_managed_groups_get_what_a_launch_template_update_is_checked_against() {
        let apply = policy(Phase::Apply, &target(Some("vpc-0abc")));
        let by_sid = |sid: &str| -> Value {
            apply["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["Sid"] == sid)
                .cloned()
                .unwrap_or_else(|| panic!("statement {sid}: {apply:#}"))
        };
        let groups = by_sid("SelfManagedNodeGroups");
        assert_eq!(
            groups["Resource"],
            "arn:aws:autoscaling:ap-northeast-2:123456789012:autoScalingGroup:*:autoScalingGroupName/*"
        );
        assert!(
            groups["Action"]
                .to_string()
                .contains("autoscaling:TerminateInstanceInAutoScalingGroup")
        );
        assert_eq!(by_sid("LaunchFromNodeTemplates")["Action"], json!(["ec2:RunInstances"]));
        let pass = by_sid("PassNodeInstanceProfileRole");
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            "ec2.amazonaws.com"
        );
        assert_eq!(
            by_sid("TagInstancesOnLaunch")["Condition"]["StringEquals"]["ec2:CreateAction"],
            "RunInstances"
        );
        // plan only reads Auto Scaling.
        let plan = actions_of(&policy(Phase::Plan, &target(None)));
        assert!(plan.contains("autoscaling:DescribeAutoScalingInstances"));
        assert!(!plan.contains("autoscaling:UpdateAutoScalingGroup"));
        assert!(allowed(Phase::Apply).contains("iam:PassRole"));
    }

    #[test]
    fn the_cluster_role_has_the_preflights_verbs() {
        let role = cluster_role(Phase::Rollback, "podnet");
        assert!(role.contains("kind: ClusterRole"), "{role}");
        assert!(role.contains("resources: [\"eniconfigs\"]"), "{role}");
        assert!(role.contains("\"delete\""), "{role}");
        let plan = cluster_role(Phase::Plan, "podnet");
        assert!(!plan.contains("\"delete\"") && !plan.contains("\"patch\""), "{plan}");
    }
}
