//! Launch template versions through the EC2 proxy: a version created from
//! a `SourceVersion` alone inherits the source's launch template data, as
//! EC2 documents for CreateLaunchTemplateVersion (moto alone would leave it
//! empty).

mod common;

use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData,
};
use podnet_sandbox::{Sandbox, Service};

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
async fn a_version_from_a_source_version_inherits_its_data() {
    let sb = Sandbox::start_async(Default::default()).await.unwrap();
    let c = ec2(&sb);
    let image = sb.world().ami_id.clone();
    let user_data = "IyEvYmluL2Jhc2gKZWNobyBoaQo=";
    let created = c
        .create_launch_template()
        .launch_template_name("podnet-inherit")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(&image)
                .instance_type(InstanceType::M5Large)
                .user_data(user_data)
                .metadata_options(
                    LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(LaunchTemplateHttpTokensState::Required)
                        .http_put_response_hop_limit(2)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = created
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap()
        .to_string();
    sb.clear_calls();
    let version = c
        .create_launch_template_version()
        .launch_template_id(&id)
        .source_version("1")
        .launch_template_data(RequestLaunchTemplateData::builder().build())
        .send()
        .await
        .unwrap()
        .launch_template_version()
        .and_then(|v| v.version_number())
        .unwrap();
    assert_eq!(version, 2);
    // The proxy's own DescribeLaunchTemplateVersions is not a client call.
    let calls: Vec<String> = sb
        .calls()
        .into_iter()
        .filter(|c| c.service == Service::Ec2)
        .map(|c| c.action)
        .collect();
    assert_eq!(calls, vec!["CreateLaunchTemplateVersion".to_string()]);
    let described = c
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions("2")
        .send()
        .await
        .unwrap();
    let data = described
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .expect("version 2 has launch template data");
    assert_eq!(data.image_id(), Some(image.as_str()));
    assert_eq!(data.instance_type(), Some(&InstanceType::M5Large));
    assert_eq!(data.user_data(), Some(user_data));
    assert_eq!(
        data.metadata_options().and_then(|m| m.http_tokens()),
        Some(&aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
    );

    // What the request sets wins over the source.
    let v3 = c
        .create_launch_template_version()
        .launch_template_id(&id)
        .source_version("1")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .instance_type(InstanceType::M6iLarge)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(v3.launch_template_version().and_then(|v| v.version_number()), Some(3));
    let described = c
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions("3")
        .send()
        .await
        .unwrap();
    let data = described.launch_template_versions()[0].launch_template_data().unwrap();
    assert_eq!(data.instance_type(), Some(&InstanceType::M6iLarge));
    assert_eq!(data.image_id(), Some(image.as_str()));
    assert_eq!(data.user_data(), Some(user_data));
}
