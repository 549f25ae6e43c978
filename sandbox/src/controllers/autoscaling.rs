//! What Amazon EC2 Auto Scaling does for a self-managed group after a call
//! returns (EC2 Auto Scaling User Guide, "Replace instances" and
//! "Terminate an instance in your Auto Scaling group"):
//! - an instance in `Terminating` is terminated (its Node goes with it, as
//!   the cloud node lifecycle controller deletes Nodes of terminated
//!   instances);
//! - fewer live instances than the desired capacity: one is launched per
//!   tick, in the group's least-used zone, from the launch template version
//!   the group names *now* (`$Latest` and `$Default` resolved at launch),
//!   `Pending` until its Node registers, then `InService`. Its kubelet takes
//!   max pods from that version's user data as the AMI family reads it,
//!   else the AMI's default for the type;
//! - more live instances than desired: the one on the oldest launch
//!   template version goes (the default termination policy's "oldest launch
//!   template" rule), without a drain — as Auto Scaling does without a
//!   lifecycle hook.

use super::Ctx;
use super::launch::{self, LaunchRequest};
use crate::autoscaling::{Group, Lifecycle};
use crate::scenario::objects::NodeOrigin;

pub async fn reconcile(ctx: &Ctx) {
    for g in ctx.autoscaling.all() {
        for i in g.instances.iter().filter(|i| i.lifecycle == Lifecycle::Terminating) {
            launch::terminate(ctx, &i.node).await;
            ctx.autoscaling.with(&g.name, |g| g.instances.retain(|x| x.id != i.id));
        }
        let booting = ctx.launches.booting();
        ctx.autoscaling.with(&g.name, |g| {
            for i in g.instances.iter_mut() {
                if i.lifecycle == Lifecycle::Pending && !booting.contains(&i.node) {
                    i.lifecycle = Lifecycle::InService;
                }
            }
        });
        let Some(g) = ctx.autoscaling.get(&g.name) else {
            continue;
        };
        let live = g.live() as u32;
        if live < g.desired {
            if let Err(e) = launch_one(ctx, &g).await {
                tracing::warn!("Auto Scaling group {}: launching an instance: {e}", g.name);
            }
        } else if live > g.desired
            && let Some(oldest) = g
                .instances
                .iter()
                .filter(|i| i.lifecycle != Lifecycle::Terminating)
                .min_by_key(|i| i.template_version.parse::<u64>().unwrap_or(0))
        {
            let id = oldest.id.clone();
            ctx.autoscaling.with(&g.name, |g| {
                if let Some(i) = g.instances.iter_mut().find(|i| i.id == id) {
                    i.lifecycle = Lifecycle::Terminating;
                }
            });
        }
    }
}

/// The template version a launch uses now: (number, user data, instance
/// type), or why it cannot launch.
async fn resolve(ctx: &Ctx, g: &Group) -> Result<(String, Option<String>, Option<String>), String> {
    let Some(c) = &ctx.ec2 else {
        return Ok((g.template.version.clone(), None, None));
    };
    let out = c
        .describe_launch_template_versions()
        .launch_template_id(&g.template.id)
        .versions(&g.template.version)
        .send()
        .await
        .map_err(|e| format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&e)))?;
    let v = out.launch_template_versions().first().ok_or_else(|| {
        format!(
            "launch template {} has no version {}",
            g.template.id, g.template.version
        )
    })?;
    let data = v.launch_template_data();
    use base64::Engine as _;
    let user_data = data
        .and_then(|d| d.user_data())
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    Ok((
        v.version_number().unwrap_or(1).to_string(),
        user_data,
        data.and_then(|d| d.instance_type()).map(|t| t.as_str().to_string()),
    ))
}

/// The group's zone with the fewest live instances, and its subnet.
fn least_used_zone(ctx: &Ctx, g: &Group) -> Option<(String, String)> {
    g.subnets
        .iter()
        .filter_map(|s| {
            ctx.world
                .zones
                .iter()
                .find(|z| &z.private_subnet == s)
                .map(|z| (z.name.clone(), s.clone()))
        })
        .min_by_key(|(zone, _)| {
            g.instances
                .iter()
                .filter(|i| &i.zone == zone && i.lifecycle != Lifecycle::Terminating)
                .count()
        })
}

async fn launch_one(ctx: &Ctx, g: &Group) -> Result<(), String> {
    let (version, user_data, lt_type) = resolve(ctx, g).await?;
    let instance_type = lt_type
        .or_else(|| g.instances.first().map(|i| i.instance_type.clone()))
        .ok_or("the launch template names no instance type")?;
    let t = crate::instance_types::lookup(&instance_type)
        .ok_or_else(|| format!("unknown instance type {instance_type}"))?;
    let max_pods = user_data
        .as_deref()
        .and_then(crate::user_data::max_pods)
        .unwrap_or_else(|| t.default_max_pods());
    let (zone, subnet) = least_used_zone(ctx, g).ok_or("the group has no subnet the sandbox knows")?;
    let tag = |k: &str| g.tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
    let group = tag("alpha.eksctl.io/nodegroup-name").unwrap_or_else(|| g.name.clone());
    let mut tags: Vec<(String, String)> = g
        .tags
        .iter()
        .filter(|t| t.propagate_at_launch)
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    tags.push(("aws:autoscaling:groupName".into(), g.name.clone()));
    let info = launch::launch(
        ctx,
        LaunchRequest {
            zone: zone.clone(),
            subnet_id: subnet,
            instance_type: instance_type.clone(),
            origin: NodeOrigin::SelfManaged { group },
            max_pods,
            tags,
            launch_template: Some((g.template.id.clone(), version.clone())),
        },
    )
    .await?;
    ctx.autoscaling.with(&g.name, |grp| {
        grp.instances.push(crate::autoscaling::Instance {
            id: info.instance_id.clone(),
            instance_type,
            zone,
            lifecycle: Lifecycle::Pending,
            template_version: version,
            node: info.name.clone(),
        })
    });
    Ok(())
}
