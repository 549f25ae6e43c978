//! The EC2 audit proxy: transparent forwarding to moto (boto3 through
//! `AWS_ENDPOINT_URL_EC2`), the call log with mutating flags, injected faults
//! answered with EC2's XML error, and Kubernetes calls in the same log.

mod common;

use podnet_sandbox::{Fault, Service};
use serde_json::Value;

#[test]
fn proxy_records_and_injects() {
    let sb = common::sandbox();
    assert!(sb.calls().is_empty());
    let vpc = sb.world().vpc_id.clone();
    let script = format!(
        r#"
import boto3, json, botocore
ec2 = boto3.client("ec2")
out = {{}}
out["vpcs"] = len(ec2.describe_vpcs(VpcIds=["{vpc}"])["Vpcs"])
ec2.create_tags(Resources=["{vpc}"], Tags=[{{"Key": "touched", "Value": "yes"}}])
try:
    ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.100.0/24", AvailabilityZone="ap-northeast-2a")
    out["first"] = "ok"
except botocore.exceptions.ClientError as e:
    out["first"] = e.response["Error"]["Code"]
    out["first_status"] = e.response["ResponseMetadata"]["HTTPStatusCode"]
s = ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.100.0/24", AvailabilityZone="ap-northeast-2a")
out["second"] = s["Subnet"]["CidrBlock"]
out["tags"] = ec2.describe_vpcs(VpcIds=["{vpc}"])["Vpcs"][0]["Tags"]
print(json.dumps(out))
"#
    );
    sb.inject_fault(
        Fault::new(Service::Ec2, "CreateSubnet", 1, 503, "RequestLimitExceeded")
            .with_message("Request limit exceeded."),
    );
    let out = common::python(&sb, &script);
    assert!(out.ok, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["vpcs"], 1);
    assert_eq!(v["first"], "RequestLimitExceeded");
    assert_eq!(v["first_status"], 503);
    assert_eq!(v["second"], "10.255.100.0/24");
    assert!(v["tags"].as_array().unwrap().iter().any(|t| t["Key"] == "touched"));

    let ec2: Vec<_> = sb.calls().into_iter().filter(|c| c.service == Service::Ec2).collect();
    let summary: Vec<(String, bool, u16, bool)> = ec2
        .iter()
        .map(|c| (c.action.clone(), c.mutating, c.status, c.injected))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("DescribeVpcs".to_string(), false, 200, false),
            ("CreateTags".to_string(), true, 200, false),
            ("CreateSubnet".to_string(), true, 503, true),
            ("CreateSubnet".to_string(), true, 200, false),
            ("DescribeVpcs".to_string(), false, 200, false),
        ]
    );
    assert_eq!(sb.mutating_calls(Service::Ec2).len(), 3);

    // moto's own errors pass through untouched
    let out = common::aws(&sb, &["ec2", "describe-vpcs", "--vpc-ids", "vpc-doesnotexist"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("InvalidVpcID.NotFound"), "{}", out.stderr);

    // Kubernetes requests are logged too, with verb and resource
    sb.clear_calls();
    common::get(&sb, "/api/v1/namespaces/default/pods?limit=1");
    common::http(
        &sb,
        "PATCH",
        "/api/v1/nodes/x",
        &[("Content-Type", "application/merge-patch+json")],
        Some("{}"),
    );
    let kube: Vec<(String, bool, u16)> = sb
        .calls()
        .into_iter()
        .map(|c| (c.action, c.mutating, c.status))
        .collect();
    assert_eq!(
        kube,
        vec![
            ("list pods".to_string(), false, 200),
            ("patch nodes".to_string(), true, 404)
        ]
    );

    // and faults can target them (drain retry tests)
    sb.inject_fault(Fault::new(
        Service::Kube,
        "create pods/eviction",
        1,
        429,
        "TooManyRequests",
    ));
    let pod = sb
        .store()
        .pods_on_node(&sb.world().nodes[1].name)
        .into_iter()
        .find(|p| p.namespace() == "default")
        .unwrap();
    let body = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod.name()}});
    let path = format!("/api/v1/namespaces/default/pods/{}/eviction", pod.name());
    let r = common::send_json(&sb, "POST", &path, "application/json", &body);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["reason"], "TooManyRequests");
    assert_eq!(
        common::send_json(&sb, "POST", &path, "application/json", &body).status,
        201
    );
}

/// EC2's eventual consistency, as boto3 sees it through the proxy: a subnet
/// created a moment ago is missing from lists and refused by id, a new CIDR
/// association stays `associating`; off again, moto's answers pass through.
#[test]
fn eventual_consistency_as_boto3_sees_it() {
    let sb = common::sandbox();
    sb.set_ec2_lag(Some(std::time::Duration::from_secs(24 * 3600)));
    let vpc = sb.world().vpc_id.clone();
    let script = format!(
        r#"
import boto3, json, botocore
ec2 = boto3.client("ec2")
out = {{}}
s = ec2.create_subnet(VpcId="{vpc}", CidrBlock="10.255.101.0/24", AvailabilityZone="ap-northeast-2a")["Subnet"]["SubnetId"]
out["listed"] = s in [x["SubnetId"] for x in ec2.describe_subnets(Filters=[{{"Name": "vpc-id", "Values": ["{vpc}"]}}])["Subnets"]]
for name, call in [("by_id", lambda: ec2.describe_subnets(SubnetIds=[s])),
                   ("tags", lambda: ec2.create_tags(Resources=[s], Tags=[{{"Key": "k", "Value": "v"}}]))]:
    try:
        call()
        out[name] = "ok"
    except botocore.exceptions.ClientError as e:
        out[name] = e.response["Error"]["Code"]
a = ec2.associate_vpc_cidr_block(VpcId="{vpc}", CidrBlock="100.64.0.0/16")["CidrBlockAssociation"]["AssociationId"]
assocs = ec2.describe_vpcs(VpcIds=["{vpc}"])["Vpcs"][0]["CidrBlockAssociationSet"]
out["state"] = [x["CidrBlockState"]["State"] for x in assocs if x["AssociationId"] == a]
print(json.dumps({{"out": out, "subnet": s}}))
"#
    );
    let run = common::python(&sb, &script);
    assert!(run.ok, "{}", run.stderr);
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let out = &v["out"];
    assert_eq!(out["listed"], false, "{v}");
    assert_eq!(out["by_id"], "InvalidSubnetID.NotFound", "{v}");
    assert_eq!(out["tags"], "InvalidSubnetID.NotFound", "{v}");
    assert_eq!(out["state"], serde_json::json!(["associating"]), "{v}");
    sb.set_ec2_lag(None);
    let subnet = v["subnet"].as_str().unwrap();
    let script = format!(
        r#"
import boto3
print(boto3.client("ec2").describe_subnets(SubnetIds=["{subnet}"])["Subnets"][0]["SubnetId"])
"#
    );
    let run = common::python(&sb, &script);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), subnet);
}

/// Deletes EC2 refuses while something depends on the resource, as boto3
/// sees them (moto alone performs both): a subnet holding a network
/// interface, and a VPC CIDR block holding a subnet. Once the dependency is
/// gone, both go through.
#[test]
fn deletes_with_dependencies_are_refused_as_ec2_refuses_them() {
    let sb = common::sandbox();
    let vpc = sb.world().vpc_id.clone();
    let script = format!(
        r#"
import boto3, json, botocore
ec2 = boto3.client("ec2")
def code(f):
    try:
        f()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return "%s %s: %s" % (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], e.response["Error"]["Message"])
out = {{}}
a = ec2.associate_vpc_cidr_block(VpcId="{vpc}", CidrBlock="100.64.0.0/16")["CidrBlockAssociation"]["AssociationId"]
s = ec2.create_subnet(VpcId="{vpc}", CidrBlock="100.64.1.0/24", AvailabilityZone="ap-northeast-2a")["Subnet"]["SubnetId"]
eni = ec2.create_network_interface(SubnetId=s, Description="aws-K8S-i-0123")["NetworkInterface"]["NetworkInterfaceId"]
out["subnet_with_eni"] = code(lambda: ec2.delete_subnet(SubnetId=s))
out["block_with_subnet"] = code(lambda: ec2.disassociate_vpc_cidr_block(AssociationId=a))
ec2.delete_network_interface(NetworkInterfaceId=eni)
out["subnet_alone"] = code(lambda: ec2.delete_subnet(SubnetId=s))
out["block_alone"] = code(lambda: ec2.disassociate_vpc_cidr_block(AssociationId=a))
print(json.dumps(out))
"#
    );
    let out = common::python(&sb, &script);
    assert!(out.ok, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        v["subnet_with_eni"],
        format!(
            "400 DependencyViolation: The subnet '{}' has dependencies and cannot be deleted.",
            v["subnet_with_eni"].as_str().unwrap().split('\'').nth(1).unwrap_or("?")
        ),
        "{v}"
    );
    assert!(v["subnet_with_eni"].as_str().unwrap().contains("'subnet-"), "{v}");
    assert_eq!(
        v["block_with_subnet"],
        format!("400 InvalidCidrBlock.InUse: The vpc {vpc} currently has a subnet within CIDR block 100.64.0.0/16"),
        "{v}"
    );
    assert_eq!(v["subnet_alone"], "ok", "{v}");
    assert_eq!(v["block_alone"], "ok", "{v}");
    let refused: Vec<(String, u16)> = sb
        .calls()
        .iter()
        .filter(|c| c.service == Service::Ec2 && c.status == 400)
        .map(|c| (c.action.clone(), c.status))
        .collect();
    assert_eq!(
        refused,
        [
            ("DeleteSubnet".to_string(), 400),
            ("DisassociateVpcCidrBlock".to_string(), 400)
        ]
    );
}
