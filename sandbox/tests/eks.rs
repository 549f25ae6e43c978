//! The EKS API through independent clients (the venv's AWS CLI, i.e.
//! botocore): shapes of DescribeCluster/Nodegroup/Addon, the error codes
//! botocore maps, add-on updates (schema validation, clientRequestToken,
//! InProgress → Successful, env flowing into aws-node), node group updates,
//! add-on versions and schemas, fault injection and the call log.

mod common;

use std::time::Duration;

use common::aws;
use podnet_sandbox::eks::Timings;
use podnet_sandbox::kube::resources::DAEMONSET;
use podnet_sandbox::{Fault, Sandbox, SandboxOptions, Service};
use serde_json::Value;

fn no_moto(timings: Timings) -> Sandbox {
    Sandbox::start(SandboxOptions {
        moto: false,
        timings,
        ..Default::default()
    })
    .unwrap()
}

fn ok_json(r: common::Run) -> Value {
    assert!(r.ok, "aws failed: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn describe_shapes() {
    let sb = no_moto(Timings::default());
    let c = ok_json(aws(&sb, &["eks", "describe-cluster", "--name", "podnet-demo"]))["cluster"].clone();
    assert_eq!(c["version"], "1.31");
    assert_eq!(c["status"], "ACTIVE");
    assert_eq!(c["endpoint"], sb.kube_url());
    let vpc = &c["resourcesVpcConfig"];
    assert_eq!(vpc["vpcId"], sb.world().vpc_id);
    assert_eq!(vpc["clusterSecurityGroupId"], sb.world().security_groups["cluster"]);
    assert_eq!(vpc["subnetIds"].as_array().unwrap().len(), 2);
    assert!(vpc["securityGroupIds"].is_array());
    assert_eq!(c["kubernetesNetworkConfig"]["ipFamily"], "ipv4");
    assert_eq!(c["kubernetesNetworkConfig"]["serviceIpv4Cidr"], "172.20.0.0/16");

    let ngs = ok_json(aws(&sb, &["eks", "list-nodegroups", "--cluster-name", "podnet-demo"]));
    assert_eq!(ngs["nodegroups"], serde_json::json!(["podnet-demo-system"]));
    let ng = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
        ],
    ))["nodegroup"]
        .clone();
    assert_eq!(ng["amiType"], "AL2023_x86_64_STANDARD");
    assert_eq!(ng["capacityType"], "ON_DEMAND");
    assert_eq!(ng["instanceTypes"], serde_json::json!(["t3.medium"]));
    assert_eq!(ng["scalingConfig"]["desiredSize"], 2);
    assert_eq!(ng["status"], "ACTIVE");
    assert!(ng["releaseVersion"].as_str().unwrap().starts_with("1.31"));
    assert_eq!(ng["launchTemplate"]["version"], "1");
    assert!(ng["launchTemplate"]["id"].as_str().unwrap().starts_with("lt-"));
    assert!(
        ng["resources"]["autoScalingGroups"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("eks-podnet-demo-system-")
    );
    assert_eq!(ng["updateConfig"]["maxUnavailable"], 1);
    assert!(ng["labels"].is_object());
    assert_eq!(ng["subnets"].as_array().unwrap().len(), 2);

    let addons = ok_json(aws(&sb, &["eks", "list-addons", "--cluster-name", "podnet-demo"]));
    assert_eq!(
        addons["addons"],
        serde_json::json!(["coredns", "kube-proxy", "vpc-cni"])
    );
    let a = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    ))["addon"]
        .clone();
    assert_eq!(a["addonVersion"], "v1.19.2-eksbuild.1");
    assert_eq!(a["status"], "ACTIVE");
    let cv: Value = serde_json::from_str(a["configurationValues"].as_str().unwrap()).unwrap();
    assert_eq!(
        cv,
        serde_json::json!({"env": {"WARM_IP_TARGET": "2", "MINIMUM_IP_TARGET": "4"}})
    );

    let versions = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-addon-versions",
            "--addon-name",
            "vpc-cni",
            "--kubernetes-version",
            "1.31",
        ],
    ));
    let vs: Vec<&str> = versions["addons"][0]["addonVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["addonVersion"].as_str().unwrap())
        .collect();
    assert!(vs.contains(&"v1.19.2-eksbuild.1"));
    let schema = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-addon-configuration",
            "--addon-name",
            "vpc-cni",
            "--addon-version",
            "v1.19.2-eksbuild.1",
        ],
    ));
    let s: Value = serde_json::from_str(schema["configurationSchema"].as_str().unwrap()).unwrap();
    let env = &s["definitions"]["Env"];
    assert_eq!(env["additionalProperties"], false);
    for k in [
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
        "ENI_CONFIG_LABEL_DEF",
        "WARM_IP_TARGET",
        "ENABLE_PREFIX_DELEGATION",
        "AWS_VPC_K8S_CNI_EXTERNALSNAT",
    ] {
        assert!(env["properties"][k].is_object(), "{k}");
    }
}

#[test]
fn errors_botocore_maps() {
    let sb = no_moto(Timings::default());
    let r = aws(
        &sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "nope",
        ],
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("(ResourceNotFoundException)"), "{}", r.stderr);
    assert!(
        r.stderr.contains("No addon: nope found in cluster: podnet-demo"),
        "{}",
        r.stderr
    );
    let r = aws(&sb, &["eks", "describe-cluster", "--name", "nope"]);
    assert!(
        r.stderr.contains("(ResourceNotFoundException)") && r.stderr.contains("No cluster found for name: nope."),
        "{}",
        r.stderr
    );
    let r = aws(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "nope",
        ],
    );
    assert!(r.stderr.contains("(ResourceNotFoundException)"), "{}", r.stderr);
    for bad in [
        r#"{"env":{"WARM_IP_TARGETS":"2"}}"#,
        r#"{"env":{"WARM_IP_TARGET":2}}"#,
        r#"{"unknownTopLevel":{}}"#,
        "{not json: [",
    ] {
        let r = aws(
            &sb,
            &[
                "eks",
                "update-addon",
                "--cluster-name",
                "podnet-demo",
                "--addon-name",
                "vpc-cni",
                "--configuration-values",
                bad,
            ],
        );
        assert!(!r.ok);
        assert!(r.stderr.contains("(InvalidParameterException)"), "{bad}: {}", r.stderr);
    }
    let r = aws(
        &sb,
        &[
            "eks",
            "update-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
            "--configuration-values",
            r#"{"env":{"WARM_IP_TARGETS":"2"}}"#,
        ],
    );
    assert!(
        r.stderr.contains(
            "$.env.WARM_IP_TARGETS: is not defined in the schema and the schema does not allow additional properties"
        ),
        "{}",
        r.stderr
    );
    let r = aws(
        &sb,
        &[
            "eks",
            "update-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
            "--addon-version",
            "v9.9.9-eksbuild.1",
        ],
    );
    assert!(r.stderr.contains("(InvalidParameterException)"), "{}", r.stderr);
    assert!(sb.mutating_calls(Service::Eks).iter().all(|c| c.status == 400));
}

#[test]
fn addon_update_flows_into_aws_node() {
    let sb = no_moto(Timings::default());
    let ds_before = sb.store().dyn_api(DAEMONSET).get("kube-system", "aws-node").unwrap();
    let generation = ds_before["metadata"]["generation"].as_i64().unwrap();
    let pods_before: Vec<String> = sb
        .store()
        .pods_on_node(&sb.world().nodes[0].name)
        .iter()
        .filter(|p| p.name().starts_with("aws-node-"))
        .map(|p| p.name().to_string())
        .collect();
    let config = r#"{"env":{"WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4","AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true","ENI_CONFIG_LABEL_DEF":"topology.kubernetes.io/zone"}}"#;
    let args = [
        "eks",
        "update-addon",
        "--cluster-name",
        "podnet-demo",
        "--addon-name",
        "vpc-cni",
        "--resolve-conflicts",
        "OVERWRITE",
        "--client-request-token",
        "podnet-token-1",
        "--configuration-values",
        config,
    ];
    let u = ok_json(aws(&sb, &args))["update"].clone();
    assert_eq!(u["type"], "AddonUpdate");
    let id = u["id"].as_str().unwrap().to_string();
    let params: Vec<(String, String)> = u["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(params.contains(&("ConfigurationValues".to_string(), config.to_string())));
    assert!(params.contains(&("ResolveConflicts".to_string(), "OVERWRITE".to_string())));
    // the same token returns the same update, whatever else is sent
    let again = ok_json(aws(&sb, &args))["update"].clone();
    assert_eq!(again["id"], id);

    common::wait_until("the add-on update to succeed", || {
        let d = ok_json(aws(
            &sb,
            &[
                "eks",
                "describe-update",
                "--name",
                "podnet-demo",
                "--update-id",
                &id,
                "--addon-name",
                "vpc-cni",
            ],
        ));
        assert_ne!(d["update"]["status"], "Failed");
        d["update"]["status"] == "Successful"
    });
    let a = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    ))["addon"]
        .clone();
    assert_eq!(a["status"], "ACTIVE");
    assert_eq!(a["configurationValues"], config);
    let ids = ok_json(aws(
        &sb,
        &[
            "eks",
            "list-updates",
            "--name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    ));
    assert_eq!(ids["updateIds"], serde_json::json!([id]));

    let ds = sb.store().dyn_api(DAEMONSET).get("kube-system", "aws-node").unwrap();
    let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let val = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .and_then(|e| e["value"].as_str().map(str::to_string))
    };
    assert_eq!(val("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG").as_deref(), Some("true"));
    assert_eq!(
        val("ENI_CONFIG_LABEL_DEF").as_deref(),
        Some("topology.kubernetes.io/zone")
    );
    assert_eq!(val("WARM_IP_TARGET").as_deref(), Some("2"));
    assert_eq!(val("CLUSTER_NAME").as_deref(), Some("podnet-demo"));
    assert!(ds["metadata"]["generation"].as_i64().unwrap() > generation);
    assert_eq!(ds["status"]["observedGeneration"], ds["metadata"]["generation"]);
    // Every node's aws-node runs the new template; Karpenter may have added
    // a node for pods pending on addresses meanwhile, so count from the
    // DaemonSet's own desired number, at least the seed's six.
    // A node Karpenter is still registering can hold an updated pod before
    // it counts as eligible, so updated may run ahead of desired, never
    // behind it.
    let desired = ds["status"]["desiredNumberScheduled"].as_i64().unwrap_or(0);
    assert!(desired >= 6, "{}", ds["status"]);
    let updated = ds["status"]["updatedNumberScheduled"].as_i64().unwrap_or(0);
    assert!(updated >= desired, "{}", ds["status"]);
    assert_eq!(ds["status"]["numberMisscheduled"], 0, "{}", ds["status"]);
    assert!(
        ds["status"]["numberReady"].as_i64().unwrap_or(0) >= 6,
        "{}",
        ds["status"]
    );
    let pods_after: Vec<String> = sb
        .store()
        .pods_on_node(&sb.world().nodes[0].name)
        .iter()
        .filter(|p| p.name().starts_with("aws-node-"))
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(pods_after.len(), 1);
    assert_ne!(pods_after, pods_before, "the DaemonSet rolled its pods");
}

#[test]
fn updates_in_progress_refuse_a_second_one() {
    let slow = Timings {
        addon: Duration::from_secs(10 * 3600),
        nodegroup_version: Duration::from_secs(10 * 3600),
        nodegroup_config: Duration::from_secs(10 * 3600),
    };
    let sb = no_moto(slow);
    ok_json(aws(
        &sb,
        &[
            "eks",
            "update-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
            "--configuration-values",
            "{}",
        ],
    ));
    let a = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    ))["addon"]
        .clone();
    assert_eq!(a["status"], "UPDATING");
    let r = aws(
        &sb,
        &[
            "eks",
            "update-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
            "--configuration-values",
            "{}",
        ],
    );
    assert!(r.stderr.contains("(ResourceInUseException)"), "{}", r.stderr);

    let lt = sb.world().launch_templates["podnet-demo-system"].0.clone();
    let u = ok_json(aws(
        &sb,
        &[
            "eks",
            "update-nodegroup-version",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
            "--launch-template",
            &format!("id={lt},version=2"),
        ],
    ))["update"]
        .clone();
    assert_eq!(u["type"], "VersionUpdate");
    assert_eq!(u["status"], "InProgress");
    let ng = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
        ],
    ))["nodegroup"]
        .clone();
    assert_eq!(ng["status"], "UPDATING");
    let r = aws(
        &sb,
        &[
            "eks",
            "update-nodegroup-config",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
            "--scaling-config",
            "desiredSize=3",
        ],
    );
    assert!(r.stderr.contains("(ResourceInUseException)"), "{}", r.stderr);
    // the next issue's rollout completes updates itself
    sb.eks()
        .complete_update("podnet-demo", u["id"].as_str().unwrap(), Ok(()))
        .unwrap();
    let ng = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
        ],
    ))["nodegroup"]
        .clone();
    assert_eq!(ng["status"], "ACTIVE");
    assert_eq!(ng["launchTemplate"]["version"], "2");
}

#[test]
fn nodegroup_updates_complete_on_the_clock() {
    let sb = no_moto(Timings::default());
    let u = ok_json(aws(
        &sb,
        &[
            "eks",
            "update-nodegroup-config",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
            "--scaling-config",
            "minSize=2,maxSize=4,desiredSize=3",
        ],
    ))["update"]
        .clone();
    let id = u["id"].as_str().unwrap().to_string();
    common::wait_until("the config update", || {
        let d = ok_json(aws(
            &sb,
            &[
                "eks",
                "describe-update",
                "--name",
                "podnet-demo",
                "--update-id",
                &id,
                "--nodegroup-name",
                "podnet-demo-system",
            ],
        ));
        d["update"]["status"] == "Successful"
    });
    let ng = ok_json(aws(
        &sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
        ],
    ))["nodegroup"]
        .clone();
    assert_eq!(
        ng["scalingConfig"],
        serde_json::json!({"minSize": 2, "maxSize": 4, "desiredSize": 3})
    );
    let r = aws(
        &sb,
        &[
            "eks",
            "update-nodegroup-config",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
            "--scaling-config",
            "minSize=5,maxSize=4,desiredSize=3",
        ],
    );
    assert!(r.stderr.contains("(InvalidParameterException)"), "{}", r.stderr);
}

#[test]
fn faults_and_the_call_log() {
    let sb = no_moto(Timings::default());
    sb.inject_fault(
        Fault::new(Service::Eks, "DescribeCluster", 2, 503, "ServiceUnavailableException").with_message("try later"),
    );
    for _ in 0..2 {
        let r = aws(&sb, &["eks", "describe-cluster", "--name", "podnet-demo"]);
        assert!(
            r.stderr.contains("(ServiceUnavailableException)") && r.stderr.contains("try later"),
            "{}",
            r.stderr
        );
    }
    assert!(aws(&sb, &["eks", "describe-cluster", "--name", "podnet-demo"]).ok);
    ok_json(aws(
        &sb,
        &[
            "eks",
            "update-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "kube-proxy",
        ],
    ));
    let calls = sb.calls();
    let eks: Vec<_> = calls.iter().filter(|c| c.service == Service::Eks).collect();
    assert_eq!(eks.len(), 4);
    assert!(eks[0].injected && eks[0].status == 503 && !eks[0].mutating);
    assert!(!eks[2].injected && eks[2].status == 200);
    assert_eq!(eks[3].action, "UpdateAddon");
    assert!(eks[3].mutating);

    // the same over HTTP, for out-of-process tests
    let r = common::plain_get(sb.eks_url(), "/_sandbox/calls").json();
    assert_eq!(r["calls"].as_array().unwrap().len(), calls.len());
    let f = common::plain_send_json(
        sb.eks_url(),
        "POST",
        "/_sandbox/faults",
        "application/json",
        &serde_json::json!({"service": "eks", "action": "ListAddons", "status": 429, "code": "ThrottlingException"}),
    );
    assert_eq!(f.status, 200);
    let r = aws(&sb, &["eks", "list-addons", "--cluster-name", "podnet-demo"]);
    assert!(r.stderr.contains("(ThrottlingException)"), "{}", r.stderr);
    assert_eq!(
        common::plain_http(sb.eks_url(), "DELETE", "/_sandbox/calls", &[], None).status,
        200
    );
    assert!(sb.calls().is_empty());
}

/// EKS updates a custom-AMI node group only through its launch template,
/// and refuses a Kubernetes or AMI release version for it.
#[test]
fn a_custom_ami_node_group_is_updated_only_through_its_launch_template() {
    let mut scenario = podnet_sandbox::Scenario::seed();
    scenario.node_groups[0].ami_type = "CUSTOM".into();
    scenario.node_groups[0].user_data = Some("[settings.kubernetes]\ncluster-name = \"podnet-demo\"\n".into());
    let sb = Sandbox::start(SandboxOptions {
        moto: false,
        ..SandboxOptions::default().with_scenario(scenario)
    })
    .unwrap();
    let update = |extra: &[&str]| {
        let mut args = vec![
            "eks",
            "update-nodegroup-version",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            "podnet-demo-system",
        ];
        args.extend_from_slice(extra);
        aws(&sb, &args)
    };
    let r = update(&[]);
    assert!(r.stderr.contains("(InvalidParameterException)"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Launch template details can't be null for Custom ami type node group"),
        "{}",
        r.stderr
    );
    let r = update(&[
        "--kubernetes-version",
        "1.31",
        "--launch-template",
        "name=podnet-demo-system-20241104021139,version=1",
    ]);
    assert!(r.stderr.contains("(InvalidParameterException)"), "{}", r.stderr);
    assert!(r.stderr.contains("custom AMI"), "{}", r.stderr);
}
