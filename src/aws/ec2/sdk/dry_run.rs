//! Permission checks by `DryRun`: each call is the real one with
//! `DryRun=true`, so EC2 evaluates exactly the permission (and the
//! resource-level conditions) the change will need, and acts on nothing.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use crate::aws::ec2::model::{DryRun, Permission, Tags};
use crate::aws::error::{AwsError, from_sdk};

fn tags(t: &Tags) -> Vec<Tag> {
    t.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// EC2's answer as a permission: `DryRunOperation` is yes,
/// `UnauthorizedOperation` no; anything else is the call's own error.
fn answer<T>(r: Result<T, AwsError>) -> Result<Permission, AwsError> {
    match r {
        // EC2 always honours DryRun; a success means whatever answered did not.
        Ok(_) => Ok(Permission::Allowed),
        Err(e) => match e.code.as_deref() {
            Some("DryRunOperation") => Ok(Permission::Allowed),
            Some("UnauthorizedOperation") | Some("AccessDenied") => Ok(Permission::Denied(e.message)),
            _ => Err(e),
        },
    }
}

pub(super) async fn ask(client: &Client, call: &DryRun) -> Result<Permission, AwsError> {
    let op = call.operation();
    match call {
        DryRun::AuthorizeIngress { group_id, rule } => {
            let perm = super::ingress_permission(rule);
            answer(
                client
                    .authorize_security_group_ingress()
                    .dry_run(true)
                    .group_id(group_id)
                    .ip_permissions(perm)
                    .send()
                    .await
                    .map_err(|e| from_sdk("ec2", op, Some(group_id.clone()), e)),
            )
        }
        DryRun::CreateSubnet {
            vpc_id,
            az,
            cidr,
            tags: t,
        } => answer(
            client
                .create_subnet()
                .dry_run(true)
                .vpc_id(vpc_id)
                .availability_zone(az)
                .cidr_block(cidr.to_string())
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Subnet)
                        .set_tags(Some(tags(t)))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| from_sdk("ec2", op, Some(format!("{cidr} in {az}")), e)),
        ),
        DryRun::CreateTags { resource_id, tags: t } => answer(
            client
                .create_tags()
                .dry_run(true)
                .resources(resource_id)
                .set_tags(Some(tags(t)))
                .send()
                .await
                .map_err(|e| from_sdk("ec2", op, Some(resource_id.clone()), e)),
        ),
        DryRun::AssociateRouteTable {
            route_table_id,
            subnet_id,
        } => answer(
            client
                .associate_route_table()
                .dry_run(true)
                .route_table_id(route_table_id)
                .subnet_id(subnet_id)
                .send()
                .await
                .map_err(|e| from_sdk("ec2", op, Some(format!("{subnet_id} → {route_table_id}")), e)),
        ),
    }
}
