//! Seeding self-managed node groups: the Auto Scaling group behind each
//! (named as eksctl names its unmanaged groups' stacks), tagged as eksctl
//! tags them, with the seeded instances InService on launch template
//! version 1. From then on the Auto Scaling controller owns them.

use super::planned::Planned;
use crate::autoscaling::model::{Group, Groups, Instance, Lifecycle, Tag, TemplateSpec};
use crate::scenario::objects::NodeOrigin;
use crate::scenario::{Scenario, World};
use crate::workloads::suffix;

/// The Auto Scaling group of a self-managed group.
pub fn asg_name(cluster: &str, group: &str) -> String {
    format!(
        "eksctl-{cluster}-nodegroup-{group}-NodeGroup-{}",
        suffix(&format!("{cluster}/{group}/asg")).to_ascii_uppercase()
    )
}

/// The group's tags; those marked propagate go on its instances.
pub fn group_tags(s: &Scenario, group: &str) -> Vec<Tag> {
    let tag = |k: &str, v: &str| Tag {
        key: k.to_string(),
        value: v.to_string(),
        propagate_at_launch: true,
    };
    vec![
        tag("Name", &format!("{}-{group}-Node", s.cluster)),
        tag("alpha.eksctl.io/nodegroup-name", group),
        tag("alpha.eksctl.io/nodegroup-type", "unmanaged"),
        tag(&format!("kubernetes.io/cluster/{}", s.cluster), "owned"),
    ]
}

/// An instance's tags: the propagated ones and the group's name, which
/// Auto Scaling adds itself.
pub fn instance_tags(s: &Scenario, group: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = group_tags(s, group)
        .into_iter()
        .filter(|t| t.propagate_at_launch)
        .map(|t| (t.key, t.value))
        .collect();
    v.push(("aws:autoscaling:groupName".into(), asg_name(&s.cluster, group)));
    v
}

/// Every self-managed group with its seeded instances.
pub(super) fn register(s: &Scenario, world: &World, planned: &[Planned], groups: &Groups) {
    for g in &s.self_managed_groups {
        let name = asg_name(&s.cluster, &g.name);
        let (id, version) = world
            .launch_templates
            .get(&g.name)
            .cloned()
            .unwrap_or_else(|| (String::new(), "1".into()));
        let instances: Vec<Instance> = planned
            .iter()
            .filter(|p| matches!(&p.origin, NodeOrigin::SelfManaged { group } if group == &g.name))
            .map(|p| Instance {
                id: p.info.instance_id.clone(),
                instance_type: p.info.instance_type.clone(),
                zone: p.info.zone.clone(),
                lifecycle: Lifecycle::InService,
                template_version: version.clone(),
                node: p.info.name.clone(),
            })
            .collect();
        let zones: Vec<String> = g
            .zones
            .clone()
            .unwrap_or_else(|| s.zones.iter().map(|z| z.name.clone()).collect());
        let subnets = zones
            .iter()
            .filter_map(|z| world.zones.iter().find(|zi| &zi.name == z))
            .map(|zi| zi.private_subnet.clone())
            .collect();
        groups.insert(Group {
            arn: format!(
                "arn:aws:autoscaling:{}:{}:autoScalingGroup:{}:autoScalingGroupName/{name}",
                s.region,
                world.account,
                uuid::Uuid::new_v4()
            ),
            name,
            template: TemplateSpec {
                id,
                name: template_name(&g.name),
                version,
            },
            min: g.min(),
            max: g.max(),
            desired: g.size,
            subnets,
            zones,
            instances,
            tags: group_tags(s, &g.name),
            created: crate::scenario::objects::ago(40, 0),
        });
    }
}

/// The launch template's name (eksctl's stack name for it).
pub fn template_name(group: &str) -> String {
    format!("{group}-lt")
}
