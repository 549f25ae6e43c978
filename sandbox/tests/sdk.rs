//! The Rust AWS SDKs podnet uses, against the sandbox: aws-sdk-eks parses
//! every EKS shape (timestamps as epoch seconds included) and maps the
//! modelled errors; aws-sdk-ec2 goes through the audit proxy to moto, and
//! injected faults surface as the error codes podnet classifies.

mod common;

use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eks::error::ProvideErrorMetadata;
use podnet_sandbox::{Fault, Sandbox, Service};

fn eks(sb: &Sandbox) -> aws_sdk_eks::Client {
    let conf = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(sb.region().to_string()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(sb.eks_url())
        .build();
    aws_sdk_eks::Client::from_conf(conf)
}

fn ec2(sb: &Sandbox) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(sb.region().to_string()))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(sb.ec2_url())
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_rust_against_eks_and_the_ec2_proxy() {
    let sb = Sandbox::start_async(Default::default()).await.unwrap();
    let c = eks(&sb);
    let cluster = c
        .describe_cluster()
        .name("podnet-demo")
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(cluster.version(), Some("1.31"));
    assert!(cluster.created_at().is_some());
    let vpc = cluster.resources_vpc_config().unwrap();
    assert_eq!(vpc.vpc_id(), Some(sb.world().vpc_id.as_str()));
    assert_eq!(
        vpc.cluster_security_group_id(),
        Some(sb.world().security_groups["cluster"].as_str())
    );
    assert_eq!(
        cluster
            .kubernetes_network_config()
            .and_then(|k| k.ip_family())
            .map(|f| f.as_str()),
        Some("ipv4")
    );

    let ng = c
        .describe_nodegroup()
        .cluster_name("podnet-demo")
        .nodegroup_name("podnet-demo-system")
        .send()
        .await
        .unwrap()
        .nodegroup
        .unwrap();
    assert_eq!(ng.ami_type().map(|a| a.as_str()), Some("AL2023_x86_64_STANDARD"));
    assert_eq!(
        ng.launch_template().and_then(|l| l.id()),
        Some(sb.world().launch_templates["podnet-demo-system"].0.as_str())
    );
    assert_eq!(ng.scaling_config().and_then(|s| s.desired_size()), Some(2));

    let addon = c
        .describe_addon()
        .cluster_name("podnet-demo")
        .addon_name("vpc-cni")
        .send()
        .await
        .unwrap()
        .addon
        .unwrap();
    assert_eq!(addon.addon_version(), Some("v1.19.2-eksbuild.1"));
    assert!(addon.configuration_values().unwrap().contains("WARM_IP_TARGET"));

    let err = c
        .describe_addon()
        .cluster_name("podnet-demo")
        .addon_name("nope")
        .send()
        .await
        .unwrap_err();
    let se = err.into_service_error();
    assert!(se.is_resource_not_found_exception(), "{se:?}");
    assert_eq!(se.code(), Some("ResourceNotFoundException"));

    let err = c
        .update_addon()
        .cluster_name("podnet-demo")
        .addon_name("vpc-cni")
        .configuration_values(r#"{"env":{"NOT_A_SETTING":"1"}}"#)
        .send()
        .await
        .unwrap_err();
    let se = err.into_service_error();
    assert!(se.is_invalid_parameter_exception(), "{se:?}");

    let u = c
        .update_addon()
        .cluster_name("podnet-demo")
        .addon_name("vpc-cni")
        .client_request_token("tok")
        .resolve_conflicts(aws_sdk_eks::types::ResolveConflicts::Preserve)
        .configuration_values(
            r#"{"env":{"WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4","AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true"}}"#,
        )
        .send()
        .await
        .unwrap()
        .update
        .unwrap();
    let id = u.id().unwrap().to_string();
    let mut status = String::new();
    for _ in 0..600 {
        let d = c
            .describe_update()
            .name("podnet-demo")
            .update_id(&id)
            .addon_name("vpc-cni")
            .send()
            .await
            .unwrap()
            .update
            .unwrap();
        status = d.status().map(|s| s.as_str().to_string()).unwrap_or_default();
        if status != "InProgress" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "Successful");
    let listed = c
        .list_updates()
        .name("podnet-demo")
        .addon_name("vpc-cni")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.update_ids(), [id]);

    // EC2 through the proxy
    let e = ec2(&sb);
    let vpcs = e.describe_vpcs().vpc_ids(&sb.world().vpc_id).send().await.unwrap();
    assert_eq!(vpcs.vpcs().len(), 1);
    sb.inject_fault(
        Fault::new(Service::Ec2, "AssociateVpcCidrBlock", 1, 400, "UnauthorizedOperation")
            .with_message("You are not authorized to perform: ec2:AssociateVpcCidrBlock"),
    );
    let err = e
        .associate_vpc_cidr_block()
        .vpc_id(&sb.world().vpc_id)
        .cidr_block("100.64.0.0/16")
        .send()
        .await
        .unwrap_err();
    let se = err.into_service_error();
    assert_eq!(se.code(), Some("UnauthorizedOperation"));
    assert!(se.message().unwrap().contains("ec2:AssociateVpcCidrBlock"));
    let ok = e
        .associate_vpc_cidr_block()
        .vpc_id(&sb.world().vpc_id)
        .cidr_block("100.64.0.0/16")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.cidr_block_association().and_then(|a| a.cidr_block()),
        Some("100.64.0.0/16")
    );
    let mutating: Vec<(String, u16, bool)> = sb
        .mutating_calls(Service::Ec2)
        .into_iter()
        .map(|c| (c.action, c.status, c.injected))
        .collect();
    assert_eq!(
        mutating,
        vec![
            ("AssociateVpcCidrBlock".to_string(), 400, true),
            ("AssociateVpcCidrBlock".to_string(), 200, false)
        ]
    );
    let eks_mutating: Vec<String> = sb.mutating_calls(Service::Eks).into_iter().map(|c| c.action).collect();
    assert_eq!(eks_mutating, ["UpdateAddon", "UpdateAddon"]);
}
