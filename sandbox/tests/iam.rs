//! IAM enforcement, judged with boto3: a policy attached over the control
//! API holds the env file's principal to it on EC2 and EKS, with the
//! services' own refusals (`UnauthorizedOperation` with an encoded message
//! STS decodes, `AccessDeniedException`), dry runs answered by the policy,
//! resource tags and request tags as conditions, unknown keys refused, and
//! IAM's `SimulatePrincipalPolicy` answering from the same policy.

mod common;

use podnet_sandbox::scenario::seed::ACCOUNT;
use podnet_sandbox::{Sandbox, SandboxOptions, Service};
use serde_json::{Value, json};

fn policy(sb: &Sandbox) -> Value {
    let region = sb.region();
    let vpc = &sb.world().vpc_id;
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": ["ec2:Describe*", "eks:Describe*", "eks:List*"], "Resource": "*"},
            {"Sid": "InVpc", "Effect": "Allow", "Action": "ec2:CreateSubnet",
             "Resource": format!("arn:aws:ec2:{region}:{ACCOUNT}:vpc/{vpc}")},
            {"Sid": "Tagged", "Effect": "Allow", "Action": ["ec2:CreateSubnet", "ec2:CreateTags"],
             "Resource": "arn:aws:ec2:*:*:subnet/*",
             "Condition": {"StringEquals": {"aws:RequestTag/team": "pods"}}},
            {"Sid": "DeleteTagged", "Effect": "Allow", "Action": "ec2:DeleteSubnet",
             "Resource": "arn:aws:ec2:*:*:subnet/*",
             "Condition": {"StringEquals": {"aws:ResourceTag/team": "pods"}}},
            {"Sid": "NoNodegroups", "Effect": "Deny", "Action": "eks:DescribeNodegroup", "Resource": "*"},
            {"Sid": "Simulate", "Effect": "Allow", "Action": "iam:SimulatePrincipalPolicy",
             "Resource": format!("arn:aws:iam::{ACCOUNT}:user/*")}
        ]
    })
}

#[test]
fn a_policy_holds_the_principal_on_ec2_and_eks_with_the_services_errors() {
    let sb = Sandbox::start(SandboxOptions {
        controllers: false,
        ..Default::default()
    })
    .expect("sandbox starts");
    // A document IAM would refuse is refused, naming the element.
    let bad = common::plain_send_json(
        sb.eks_url(),
        "PUT",
        "/_sandbox/iam-policy",
        "application/json",
        &json!({"Statement": [{"Effect": "Allow", "Action": "CreateSubnet", "Resource": "*"}]}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("MalformedPolicyDocument"), "{}", bad.body);
    let put = common::plain_send_json(
        sb.eks_url(),
        "PUT",
        "/_sandbox/iam-policy",
        "application/json",
        &policy(&sb),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    sb.clear_calls();

    let vpc = sb.world().vpc_id.clone();
    let seeded_subnet = sb.world().zones[0].private_subnet.clone();
    let cluster = sb.cluster_name().to_string();
    let region = sb.region().to_string();
    let account = ACCOUNT;
    let script = format!(
        r#"
import boto3, botocore, json
ec2 = boto3.client("ec2")
eks = boto3.client("eks")
sts = boto3.client("sts")
out = {{}}
def code(f):
    try:
        f()
        return "ok"
    except botocore.exceptions.ClientError as e:
        out.setdefault("messages", []).append(e.response["Error"]["Message"])
        return "%s/%d" % (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
tags = [{{"ResourceType": "subnet", "Tags": [{{"Key": "team", "Value": "pods"}}]}}]
out["describe"] = code(lambda: ec2.describe_vpcs(VpcIds=["{vpc}"]))
out["untagged"] = code(lambda: ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.250.0/24"))
untagged_message = out["messages"][-1]
out["dry_untagged"] = code(lambda: ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.250.0/24", DryRun=True))
out["dry_tagged"] = code(lambda: ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.250.0/24", TagSpecifications=tags, DryRun=True))
made = ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.250.0/24", TagSpecifications=tags)["Subnet"]["SubnetId"]
out["delete_seeded"] = code(lambda: ec2.delete_subnet(SubnetId="{seeded_subnet}"))
out["delete_made"] = code(lambda: ec2.delete_subnet(SubnetId=made))
out["cluster"] = code(lambda: eks.describe_cluster(name="{cluster}"))
out["nodegroups"] = code(lambda: eks.list_nodegroups(clusterName="{cluster}"))
ng = eks.list_nodegroups(clusterName="{cluster}")["nodegroups"][0]
out["nodegroup"] = code(lambda: eks.describe_nodegroup(clusterName="{cluster}", nodegroupName=ng))
encoded = untagged_message.split("Encoded authorization failure message: ")[1]
out["decoded"] = json.loads(sts.decode_authorization_message(EncodedMessage=encoded)["DecodedMessage"])
iam = boto3.client("iam")
me = sts.get_caller_identity()["Arn"]
def simulate(actions, resources=None, context=None):
    kw = {{"PolicySourceArn": me, "ActionNames": actions}}
    if resources: kw["ResourceArns"] = resources
    if context: kw["ContextEntries"] = [{{"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": "string"}} for k, v in context.items()]
    return {{r["EvalActionName"]: r["EvalDecision"] for r in iam.simulate_principal_policy(**kw)["EvaluationResults"]}}
subnets = ["arn:aws:ec2:{region}:{account}:subnet/*"]
out["sim_tagged"] = simulate(["ec2:CreateSubnet", "eks:DescribeNodegroup", "eks:UpdateAddon"], subnets, {{"aws:RequestTag/team": "pods"}})
out["sim_untagged"] = simulate(["ec2:CreateSubnet"], subnets)
out["sim_stranger"] = code(lambda: iam.simulate_principal_policy(PolicySourceArn="arn:aws:iam::{account}:user/nobody", ActionNames=["ec2:DescribeVpcs"]))
stranger = boto3.client("ec2", aws_access_key_id="AKIAUNKNOWN000000000", aws_secret_access_key="x")
out["stranger"] = code(lambda: stranger.describe_vpcs())
print(json.dumps(out))
"#
    );
    let run = common::python(&sb, &script);
    assert!(run.ok, "{}", run.stderr);
    let out: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(out["describe"], "ok");
    assert_eq!(out["untagged"], "UnauthorizedOperation/403", "{out:#}");
    let first = out["messages"][0].as_str().unwrap();
    assert!(
        first.starts_with("You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/podnet-sandbox-admin is not authorized to perform: ec2:CreateSubnet on resource: arn:aws:ec2:"),
        "{first}"
    );
    assert!(
        first.contains(":subnet/* because no identity-based policy allows the ec2:CreateSubnet action"),
        "{first}"
    );
    // EC2 checks permissions before it answers a dry run.
    assert_eq!(out["dry_untagged"], "UnauthorizedOperation/403");
    assert_eq!(out["dry_tagged"], "DryRunOperation/412");
    assert_eq!(out["delete_seeded"], "UnauthorizedOperation/403", "no team=pods tag");
    assert_eq!(out["delete_made"], "ok");
    assert_eq!(out["cluster"], "ok");
    assert_eq!(out["nodegroups"], "ok");
    assert_eq!(out["nodegroup"], "AccessDeniedException/403");
    let denied = out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|m| m.contains("eks:DescribeNodegroup"))
        .expect("the EKS denial");
    assert!(
        denied.ends_with("with an explicit deny in an identity-based policy"),
        "{denied}"
    );
    assert!(denied.contains(&format!("nodegroup/{cluster}/")), "{denied}");
    assert_eq!(out["decoded"]["allowed"], false);
    assert_eq!(out["decoded"]["context"]["action"], "ec2:CreateSubnet");
    assert_eq!(out["stranger"], "AuthFailure/401");
    // IAM's simulator answers from the same policy, with the context keys.
    assert_eq!(
        out["sim_tagged"],
        json!({"ec2:CreateSubnet": "allowed", "eks:DescribeNodegroup": "explicitDeny", "eks:UpdateAddon": "implicitDeny"})
    );
    assert_eq!(out["sim_untagged"], json!({"ec2:CreateSubnet": "implicitDeny"}));
    assert_eq!(out["sim_stranger"], "NoSuchEntity/404");

    // The refused changes never reached moto: only the tagged subnet was
    // created, and only it deleted.
    let ec2 = sb.calls().into_iter().filter(|c| c.service == Service::Ec2);
    let changes: Vec<(String, u16)> = ec2
        .filter(|c| c.mutating)
        .map(|c| (c.action.clone(), c.status))
        .collect();
    assert_eq!(
        changes,
        [
            ("CreateSubnet".to_string(), 403),
            ("CreateSubnet".to_string(), 200),
            ("DeleteSubnet".to_string(), 403),
            ("DeleteSubnet".to_string(), 200),
        ]
    );

    // Detached, the principal is an administrator again.
    let got = common::plain_get(sb.eks_url(), "/_sandbox/iam-policy");
    assert!(got.body.contains("podnet-sandbox-admin"), "{}", got.body);
    common::plain_http(sb.eks_url(), "DELETE", "/_sandbox/iam-policy", &[], None);
    let run = common::aws(
        &sb,
        &["ec2", "delete-subnet", "--subnet-id", &seeded_subnet, "--dry-run"],
    );
    assert!(run.stderr.contains("DryRunOperation"), "{}", run.stderr);
}
