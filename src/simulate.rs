//! The permission preflight for the changes EC2's `DryRun` cannot ask
//! about: `AssociateVpcCidrBlock` takes no `DryRun`, EKS has none, and the
//! changes that only some clusters need (tagging an adopted subnet, moving
//! it to the right route table, a node group's new launch template
//! version). For each change this plan will make, IAM's policy simulator is
//! asked about the caller's own principal with the resources and condition
//! keys the call will carry; a denial is a preflight error naming the
//! action, before anything changes. When the simulator cannot be asked
//! (no `iam:SimulatePrincipalPolicy`, a principal it cannot simulate), the
//! plan says which actions go unchecked until they run.

use crate::aws::access::{Ask, Caller, Simulated};
use crate::discovery::Discovery;
use crate::planner::Finding;
use crate::steps::{Env, MigrationInputs};

/// One question and what podnet needs the action for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    ask: Ask,
    why: &'static str,
}

struct Arns<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    cluster: &'a str,
}

impl Arns<'_> {
    fn ec2(&self, resource: &str) -> String {
        format!("arn:{}:ec2:{}:{}:{resource}", self.partition, self.region, self.account)
    }

    fn eks(&self, resource: &str) -> String {
        format!("arn:{}:eks:{}:{}:{resource}", self.partition, self.region, self.account)
    }

    fn cluster(&self) -> String {
        self.eks(&format!("cluster/{}", self.cluster))
    }
}

fn ask(action: &str, resources: Vec<String>, context: Vec<(String, String)>, why: &'static str) -> Check {
    Check {
        ask: Ask {
            action: action.to_string(),
            resources,
            context,
        },
        why,
    }
}

/// The EKS half: the add-on update and the node group rolls, and the
/// update reads that follow them.
fn eks_checks(inputs: &MigrationInputs, d: &Discovery, a: &Arns<'_>) -> Vec<Check> {
    let mut out = vec![];
    let mut followed = vec![];
    if inputs.vpc_cni.managed_addon {
        let addon = d
            .addon
            .as_ref()
            .and_then(|x| x.arn.clone())
            .unwrap_or_else(|| a.eks(&format!("addon/{}/vpc-cni/*", a.cluster)));
        out.push(ask(
            "eks:UpdateAddon",
            vec![addon.clone()],
            vec![],
            "turn custom networking on in the vpc-cni add-on",
        ));
        followed.push(addon);
    }
    let groups: Vec<String> = inputs
        .node_groups
        .iter()
        .map(|g| {
            d.nodegroups
                .iter()
                .find(|n| n.name == g.name)
                .and_then(|n| n.arn.clone())
                .unwrap_or_else(|| a.eks(&format!("nodegroup/{}/{}/*", a.cluster, g.name)))
        })
        .collect();
    if !groups.is_empty() {
        out.push(ask(
            "eks:UpdateNodegroupVersion",
            groups.clone(),
            vec![],
            "roll the managed node groups onto custom networking",
        ));
        followed.extend(groups);
    }
    if !followed.is_empty() {
        out.push(ask(
            "eks:DescribeUpdate",
            std::iter::once(a.cluster()).chain(followed).collect(),
            vec![],
            "follow the add-on's and node groups' updates",
        ));
    }
    let templates: Vec<String> = inputs
        .node_groups
        .iter()
        .filter_map(|g| g.launch_template.as_ref())
        .map(|lt| a.ec2(&format!("launch-template/{}", lt.id.as_deref().unwrap_or("*"))))
        .collect();
    if !templates.is_empty() {
        out.push(ask(
            "ec2:DescribeLaunchTemplates",
            vec![],
            vec![],
            "read the node groups' launch templates",
        ));
        out.push(ask(
            "ec2:CreateLaunchTemplateVersion",
            templates,
            vec![],
            "give the node groups' launch templates a version for custom networking",
        ));
    }
    out
}

/// Everything this plan will ask AWS for that plan cannot dry-run.
fn checks(inputs: &MigrationInputs, d: &Discovery, caller: &Caller) -> Vec<Check> {
    let a = Arns {
        partition: caller.partition(),
        region: &inputs.region,
        account: &caller.account,
        cluster: &inputs.cluster,
    };
    let vpc = a.ec2(&format!("vpc/{}", inputs.vpc_id));
    let in_vpc = || vec![("ec2:Vpc".to_string(), vpc.clone())];
    let mut out = vec![];
    if !d.vpc.live_cidrs().contains(&inputs.secondary_cidr) {
        out.push(ask(
            "ec2:AssociateVpcCidrBlock",
            vec![vpc.clone()],
            vec![],
            "associate the pod CIDR with the VPC",
        ));
    }
    // Pod subnets that exist already are adopted: tagged, and put on the
    // node subnets' route table when they are on another.
    for p in &inputs.pod_subnets {
        let Some(existing) = d.subnets.iter().find(|s| s.cidr == p.cidr && s.vpc_id == inputs.vpc_id) else {
            continue;
        };
        let subnet = a.ec2(&format!("subnet/{}", existing.id));
        // The tags the call will send, as its request carries them.
        let tagged = in_vpc()
            .into_iter()
            .chain(p.tags.iter().map(|(k, v)| (format!("aws:RequestTag/{k}"), v.clone())))
            .collect();
        out.push(ask(
            "ec2:CreateTags",
            vec![subnet.clone()],
            tagged,
            "tag the pod subnets that already exist",
        ));
        let on_its_table = d
            .route_tables
            .iter()
            .any(|rt| rt.id == p.route_table_id && rt.association_for(&existing.id).is_some());
        if !on_its_table {
            out.push(ask(
                "ec2:ReplaceRouteTableAssociation",
                vec![a.ec2(&format!("route-table/{}", p.route_table_id)), subnet],
                in_vpc(),
                "put the existing pod subnets on the node subnets' route tables",
            ));
        }
    }
    out.extend(eks_checks(inputs, d, &a));
    out
}

fn unchecked(why: String, checks: &[Check]) -> Finding {
    let actions: Vec<&str> = checks.iter().map(|c| c.ask.action.as_str()).collect();
    Finding::warning(
        "aws.permission-unchecked",
        format!("{why}, so {} go unchecked until they run", actions.join(", ")),
        "allow iam:SimulatePrincipalPolicy on your own principal (`podnet iam-policy --for apply` includes it), or check the policy by hand against `podnet iam-policy --for apply`",
    )
}

/// A preflight error for each change these credentials may not make by
/// IAM's simulator; a warning when it cannot be asked.
pub async fn findings(env: &Env, inputs: &MigrationInputs, d: &Discovery) -> Vec<Finding> {
    let caller = match env.aws.access.caller().await {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::warning(
                "aws.permission-unchecked",
                format!("could not ask STS who these credentials are: {e}"),
                "the EKS changes and the CIDR association are checked when they run",
            )];
        }
    };
    let all = checks(inputs, d, &caller);
    if all.is_empty() {
        return vec![];
    }
    let Some(source) = caller.policy_source() else {
        return vec![unchecked(
            format!("IAM's policy simulator cannot simulate {}", caller.arn),
            &all,
        )];
    };
    let mut out = vec![];
    for c in &all {
        match env.aws.access.simulate(&source, &c.ask).await {
            Ok(Simulated::Allowed) => {}
            Ok(Simulated::Denied { explicit, resources }) => out.push(Finding::error(
                "aws.permission",
                format!(
                    "these AWS credentials may not {} on {} (IAM's policy simulator answered {} for {source}): podnet needs it to {}",
                    c.ask.action,
                    if resources.is_empty() { "*".to_string() } else { resources.join(", ") },
                    if explicit { "explicitDeny" } else { "implicitDeny" },
                    c.why
                ),
                "grant it before applying: `podnet iam-policy --for apply` prints the policy podnet needs",
            )),
            Err(e) => {
                out.push(unchecked(format!("could not ask IAM's policy simulator ({e})"), &all));
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::tests::seed::{seed, seed_spec};

    fn caller() -> Caller {
        Caller {
            arn: "arn:aws:sts::123456789012:assumed-role/podnet/ci".into(),
            account: "123456789012".into(),
        }
    }

    #[test]
    fn the_seed_plan_asks_about_the_association_the_addon_and_the_node_group_roll() {
        let d = seed();
        let inputs = crate::planner::plan(&seed_spec(), &d).inputs;
        let asked: Vec<(String, Vec<String>)> = checks(&inputs, &d, &caller())
            .into_iter()
            .map(|c| (c.ask.action, c.ask.resources))
            .collect();
        let actions: Vec<&str> = asked.iter().map(|(a, _)| a.as_str()).collect();
        assert!(actions.contains(&"ec2:AssociateVpcCidrBlock"), "{asked:?}");
        assert!(actions.contains(&"eks:UpdateAddon"), "{asked:?}");
        let (_, vpc) = asked.iter().find(|(a, _)| a == "ec2:AssociateVpcCidrBlock").unwrap();
        assert!(
            vpc[0].starts_with("arn:aws:ec2:ap-northeast-2:123456789012:vpc/"),
            "{vpc:?}"
        );
        let (_, addon) = asked.iter().find(|(a, _)| a == "eks:UpdateAddon").unwrap();
        assert_eq!(
            addon,
            &["arn:aws:eks:ap-northeast-2:123456789012:addon/podnet-demo/vpc-cni/2c3d"]
        );
        if !inputs.node_groups.is_empty() {
            let (_, groups) = asked.iter().find(|(a, _)| a == "eks:UpdateNodegroupVersion").unwrap();
            assert!(groups[0].contains(":nodegroup/podnet-demo/"), "{groups:?}");
            assert!(actions.contains(&"eks:DescribeUpdate"));
        }
        assert!(
            !actions.contains(&"ec2:CreateTags"),
            "no pod subnet exists yet: {asked:?}"
        );
    }

    #[test]
    fn an_associated_cidr_is_not_asked_about_again() {
        let mut d = seed();
        let inputs = crate::planner::plan(&seed_spec(), &d).inputs;
        d.vpc.cidr_associations.push(crate::aws::ec2::CidrAssociation {
            association_id: "vpc-cidr-assoc-1".into(),
            cidr: inputs.secondary_cidr,
            state: "associated".into(),
        });
        let actions: Vec<String> = checks(&inputs, &d, &caller())
            .into_iter()
            .map(|c| c.ask.action)
            .collect();
        assert!(!actions.iter().any(|a| a == "ec2:AssociateVpcCidrBlock"), "{actions:?}");
    }
}
