//! The sandbox's Auto Scaling, judged by independent clients: the venv's
//! AWS CLI and boto3 (through `AWS_ENDPOINT_URL_AUTO_SCALING`) and kubectl.
//! A self-managed group's instances are its nodes; a new launch template
//! version whose user data sets max pods reaches only the instances
//! launched after the group points at it; terminating without a decrement
//! brings a replacement; the service's validation errors come back in its
//! own shape.

mod common;

use podnet_sandbox::Scenario;
use serde_json::Value;

fn scenario() -> Scenario {
    let text = podnet_sandbox::scenario::SEED.replace("other_tenant_ips = 160", "other_tenant_ips = 100")
        + r#"
[[self_managed_groups]]
name = "legacy"
instance_type = "m5.large"
size = 2
min_size = 1
max_size = 3
ami_family = "AL2"
"#;
    Scenario::parse(&text, "autoscaling").expect("scenario parses")
}

fn json(run: &common::Run) -> Value {
    assert!(run.ok, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn legacy_pods(sb: &podnet_sandbox::Sandbox) -> Vec<(String, String)> {
    let nodes = json(&common::kubectl(
        sb,
        &[
            "get",
            "nodes",
            "-l",
            "alpha.eksctl.io/nodegroup-name=legacy",
            "-o",
            "json",
        ],
    ));
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["spec"]["providerID"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                n["status"]["capacity"]["pods"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_self_managed_group_replaces_a_terminated_instance_from_its_new_version() {
    let sb = common::sandbox_with(scenario());
    let groups = json(&common::aws(
        &sb,
        &["autoscaling", "describe-auto-scaling-groups", "--output", "json"],
    ));
    let g = &groups["AutoScalingGroups"][0];
    let name = g["AutoScalingGroupName"].as_str().unwrap().to_string();
    assert!(name.contains("legacy"), "{g}");
    assert_eq!(g["DesiredCapacity"], 2);
    assert_eq!(g["LaunchTemplate"]["Version"], "1");
    let instances: Vec<String> = g["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["LifecycleState"], "InService");
            i["InstanceId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(instances.len(), 2);
    // The nodes are the instances; the AL2 AMI's default max pods for m5.large.
    let mut before = legacy_pods(&sb);
    before.sort();
    let mut want: Vec<(String, String)> = instances.iter().map(|i| (i.clone(), "29".to_string())).collect();
    want.sort();
    assert_eq!(before, want);
    let lt = g["LaunchTemplate"]["LaunchTemplateId"].as_str().unwrap();
    let victim = &instances[0];
    let script = format!(
        r#"
import base64, boto3, botocore
ec2 = boto3.client("ec2")
asg = boto3.client("autoscaling")
old = ec2.describe_launch_template_versions(LaunchTemplateId="{lt}", Versions=["1"])["LaunchTemplateVersions"][0]
text = base64.b64decode(old["LaunchTemplateData"]["UserData"]).decode()
new = text.replace("--kubelet-extra-args '", "--use-max-pods false --kubelet-extra-args '--max-pods=17 ")
v = ec2.create_launch_template_version(LaunchTemplateId="{lt}", SourceVersion="1",
    LaunchTemplateData={{"UserData": base64.b64encode(new.encode()).decode()}})["LaunchTemplateVersion"]["VersionNumber"]
try:
    asg.update_auto_scaling_group(AutoScalingGroupName="{name}", DesiredCapacity=9)
    raise SystemExit("desired 9 was accepted")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "ValidationError", e.response
    print("bounds:", e.response["Error"]["Message"])
try:
    asg.terminate_instance_in_auto_scaling_group(InstanceId="i-0000000000000000f", ShouldDecrementDesiredCapacity=False)
    raise SystemExit("an unknown instance was accepted")
except botocore.exceptions.ClientError as e:
    assert "No managed instance found" in e.response["Error"]["Message"], e.response
asg.update_auto_scaling_group(AutoScalingGroupName="{name}", LaunchTemplate={{"LaunchTemplateId": "{lt}", "Version": str(v)}})
a = asg.terminate_instance_in_auto_scaling_group(InstanceId="{victim}", ShouldDecrementDesiredCapacity=False)["Activity"]
print("activity:", a["Description"], a["StatusCode"])
"#
    );
    let run = common::python(&sb, &script);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Desired capacity:9 must be between"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("activity: Terminating EC2 instance: {victim} InProgress")),
        "{}",
        run.stdout
    );
    common::wait_until("the replacement registers with the new version's max pods", || {
        let now = legacy_pods(&sb);
        now.len() == 2 && !now.iter().any(|(i, _)| i == victim) && now.iter().any(|(_, p)| p == "17")
    });
    let now = legacy_pods(&sb);
    let kept: Vec<_> = now
        .iter()
        .filter(|(i, _)| i != victim && instances.contains(i))
        .collect();
    assert_eq!(kept.len(), 1, "the other instance stays: {now:?}");
    assert_eq!(kept[0].1, "29", "an instance keeps the max pods it booted with");
    // The service reports the replacement on version 2.
    let out = json(&common::aws(
        &sb,
        &["autoscaling", "describe-auto-scaling-instances", "--output", "json"],
    ));
    let versions: Vec<String> = out["AutoScalingInstances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["LaunchTemplate"]["Version"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(versions.contains(&"2".to_string()), "{out}");
    // The seed instance a decrement would take below min size is refused.
    let run = common::aws(
        &sb,
        &[
            "autoscaling",
            "update-auto-scaling-group",
            "--auto-scaling-group-name",
            &name,
            "--min-size",
            "2",
        ],
    );
    assert!(run.ok, "{}", run.stderr);
    let run = common::aws(
        &sb,
        &[
            "autoscaling",
            "terminate-instance-in-auto-scaling-group",
            "--instance-id",
            &kept[0].0,
            "--should-decrement-desired-capacity",
        ],
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains("ValidationError") && run.stderr.contains("desiredSize equals minSize (2)"),
        "{}",
        run.stderr
    );
    // DescribeAutoScalingInstances pages 50 at most.
    let run = common::aws(
        &sb,
        &[
            "autoscaling",
            "describe-auto-scaling-instances",
            "--max-items",
            "60",
            "--page-size",
            "60",
        ],
    );
    assert!(
        !run.ok && run.stderr.contains("less than or equal to 50"),
        "{}",
        run.stderr
    );
}
