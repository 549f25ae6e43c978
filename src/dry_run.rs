//! The AWS half of the permission preflight: before `plan` shows a change,
//! EC2 is asked with `DryRun` whether these credentials may make each kind
//! of change the plan holds (the real call, with the plan's own
//! parameters, so resource-level conditions are evaluated as they will be).
//! A denial is a preflight error naming the IAM action; nothing changes.
//! `AssociateVpcCidrBlock` takes no `DryRun` and EKS has none: IAM's policy
//! simulator is asked about those ([`crate::simulate`]).

use crate::aws::AwsError;
use crate::aws::ec2::{DryRun, NewIngress, Permission};
use crate::discovery::Discovery;
use crate::planner::Finding;
use crate::steps::{Env, MigrationInputs};

/// One dry run and what podnet needs the action for.
struct Check {
    call: DryRun,
    why: &'static str,
}

/// The dry runs for the plan's EC2 changes: one per kind and target group.
fn checks(inputs: &MigrationInputs, d: &Discovery) -> Vec<Check> {
    let mut out = vec![];
    let mut groups: Vec<&str> = vec![];
    for p in &inputs.security_group_patches {
        if groups.contains(&p.group_id.as_str()) {
            continue;
        }
        groups.push(&p.group_id);
        out.push(Check {
            call: DryRun::AuthorizeIngress {
                group_id: p.group_id.clone(),
                rule: NewIngress {
                    protocol: p.protocol.clone(),
                    from_port: p.from_port,
                    to_port: p.to_port,
                    cidr: p.cidr,
                    description: p.description.clone(),
                },
            },
            why: "admit the pod CIDR in the security groups",
        });
    }
    if let Some(s) = inputs.pod_subnets.first() {
        out.push(Check {
            call: DryRun::CreateSubnet {
                vpc_id: inputs.vpc_id.clone(),
                az: s.availability_zone.clone(),
                cidr: s.cidr,
                tags: s.tags.clone(),
            },
            why: "create the tagged pod subnets",
        });
        // The route table association is asked about with an existing
        // subnet of the VPC: the pod subnets do not exist yet.
        if let Some(existing) = d
            .subnets
            .iter()
            .find(|x| x.vpc_id == inputs.vpc_id && !inputs.secondary_cidr.contains(&x.cidr))
        {
            out.push(Check {
                call: DryRun::AssociateRouteTable {
                    route_table_id: s.route_table_id.clone(),
                    subnet_id: existing.id.clone(),
                },
                why: "put the pod subnets on the node subnets' route tables",
            });
        }
    }
    out
}

/// EC2's denial without its boilerplate and its encoded message (which
/// only `aws sts decode-authorization-message` can read), cut to a line.
fn shorten(message: &str) -> String {
    let m = message
        .split("Encoded authorization failure message:")
        .next()
        .unwrap_or(message)
        .trim()
        .trim_start_matches("You are not authorized to perform this operation.")
        .trim()
        .trim_end_matches('.');
    if m.chars().count() > 400 {
        format!("{}…", m.chars().take(400).collect::<String>())
    } else {
        m.to_string()
    }
}

/// The IAM action a denial names ("… is not authorized to perform:
/// ec2:CreateTags on resource …"): a dry run of `CreateSubnet` with tags is
/// also refused for want of `ec2:CreateTags`. Else the call's own action.
fn denied_action(op: &str, message: &str) -> String {
    message
        .split("perform: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|a| a.contains(':'))
        .map(str::to_string)
        .unwrap_or_else(|| format!("ec2:{op}"))
}

/// A preflight error for each EC2 change these credentials may not make;
/// a warning for each that could not be asked.
pub async fn findings(env: &Env, inputs: &MigrationInputs, d: &Discovery) -> Vec<Finding> {
    let mut out = vec![];
    for c in checks(inputs, d) {
        let op = c.call.operation();
        let answer: Result<Permission, AwsError> = env.aws.ec2.dry_run(&c.call).await;
        match answer {
            Ok(Permission::Allowed) => {}
            Ok(Permission::Denied(message)) => out.push(Finding::error(
                "aws.permission",
                format!(
                    "these AWS credentials may not {} (EC2 answered a dry run of ec2:{op} with UnauthorizedOperation{}): podnet needs it to {}",
                    denied_action(op, &message),
                    Some(shorten(&message))
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default(),
                    c.why
                ),
                "grant it before applying: `podnet iam-policy --for apply` prints the policy podnet needs (`aws sts decode-authorization-message` explains an encoded message)",
            )),
            Err(e) => out.push(Finding::warning(
                "aws.permission-unchecked",
                format!("could not ask EC2 whether these credentials may ec2:{op}: {e}"),
                "it is checked when the step runs; `podnet iam-policy --for apply` lists what podnet needs",
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_is_read_for_its_action_without_the_encoded_message() {
        let m = "You are not authorized to perform this operation. User: arn:aws:iam::1:user/a is not authorized to perform: ec2:CreateTags on resource: arn:aws:ec2:r:1:subnet/* because no identity-based policy allows the ec2:CreateTags action. Encoded authorization failure message: eyJhbGxvd2Vk";
        assert_eq!(denied_action("CreateSubnet", m), "ec2:CreateTags");
        assert_eq!(
            shorten(m),
            "User: arn:aws:iam::1:user/a is not authorized to perform: ec2:CreateTags on resource: arn:aws:ec2:r:1:subnet/* because no identity-based policy allows the ec2:CreateTags action"
        );
        let old = "You are not authorized to perform this operation. Encoded authorization failure message: AbCd";
        assert_eq!(denied_action("CreateSubnet", old), "ec2:CreateSubnet");
        assert_eq!(shorten(old), "");
    }
    use crate::planner::tests::seed::{seed, seed_spec};

    #[test]
    fn one_dry_run_per_group_and_kind_of_change() {
        let d = seed();
        let inputs = crate::planner::plan(&seed_spec(), &d).inputs;
        let ops: Vec<&str> = checks(&inputs, &d).iter().map(|c| c.call.operation()).collect();
        let groups: std::collections::BTreeSet<&str> = inputs
            .security_group_patches
            .iter()
            .map(|p| p.group_id.as_str())
            .collect();
        assert_eq!(
            ops.iter().filter(|o| **o == "AuthorizeSecurityGroupIngress").count(),
            groups.len()
        );
        assert!(ops.contains(&"CreateSubnet"), "{ops:?}");
        assert!(ops.contains(&"AssociateRouteTable"), "{ops:?}");
    }
}
