//! The security group rules of a plan: the groups an ENIConfig gives pod
//! ENIs (`[eniconfig] security_groups`) and each
//! `[[security_group_patch]]`, its target group, protocol, ports and rule
//! description, checked as EC2 would accept them.

use super::model::{PortSpec, SecurityGroupPatch};
use super::validated::{Problem, Protocol, SecurityGroupRef, SgPatchSpec};

pub(super) fn check_eni_security_groups(groups: &[String], p: &mut Vec<Problem>) -> Vec<SecurityGroupRef> {
    let mut eni_security_groups = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let path = format!("eniconfig.security_groups[{i}]");
        match sg_ref(g) {
            Ok(r) => eni_security_groups.push(r),
            Err(msg) => p.push(Problem::new(
                path,
                msg,
                "write a group id (sg-0123abcd) or the group's name",
            )),
        }
    }
    if eni_security_groups.len() > 5 {
        p.push(Problem::new(
            "eniconfig.security_groups",
            format!("{} groups listed; an ENI takes at most 5", eni_security_groups.len()),
            "list at most 5 security groups",
        ));
    }
    eni_security_groups
}

/// Every valid patch, in order; a rule listed twice is a problem.
pub(super) fn check_sg_patches(patches: &[SecurityGroupPatch], p: &mut Vec<Problem>) -> Vec<SgPatchSpec> {
    let mut security_group_patches = Vec::new();
    for (i, patch) in patches.iter().enumerate() {
        if let Some(s) = check_sg_patch(patch, &format!("security_group_patch[{i}]"), p) {
            security_group_patches.push(s);
        }
    }
    for (i, a) in security_group_patches.iter().enumerate() {
        if security_group_patches[..i].contains(a) {
            p.push(Problem::new(
                format!("security_group_patch[{i}]"),
                "the same rule is listed twice",
                "remove the duplicate entry",
            ));
        }
    }
    security_group_patches
}

fn sg_ref(s: &str) -> Result<SecurityGroupRef, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty security group".to_string());
    }
    if let Some(hex) = s.strip_prefix("sg-")
        && hex.len() >= 8
        && hex.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Ok(SecurityGroupRef::Id(s.to_string()));
    }
    // A name may also start with "sg-"; only a well-formed id is taken as one.
    if s.len() > 255 {
        return Err("a security group name is at most 255 characters".to_string());
    }
    Ok(SecurityGroupRef::Name(s.to_string()))
}

fn check_sg_patch(patch: &SecurityGroupPatch, base: &str, p: &mut Vec<Problem>) -> Option<SgPatchSpec> {
    let target = patch_target(patch, base, p);
    let protocol = patch_protocol(patch, base, p);
    let ports = patch_ports(patch, protocol, base, p);
    let description = patch_description(patch, base, p);

    let target = target?;
    let protocol = protocol?;
    if matches!(protocol, Protocol::Tcp | Protocol::Udp) && ports.is_none() {
        return None;
    }
    Some(SgPatchSpec {
        target,
        protocol,
        ports,
        description,
    })
}

/// The group a patch targets: exactly one of id, name or tags.
fn patch_target(patch: &SecurityGroupPatch, base: &str, p: &mut Vec<Problem>) -> Option<SecurityGroupRef> {
    let given = [
        patch.group_id.is_some(),
        patch.group_name.is_some(),
        patch.group_tags.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        p.push(Problem::new(
            base.to_string(),
            format!("{given} targets given"),
            "set exactly one of group_id, group_name or group_tags",
        ));
        None
    } else if let Some(id) = &patch.group_id {
        match sg_ref(id) {
            Ok(SecurityGroupRef::Id(id)) => Some(SecurityGroupRef::Id(id)),
            _ => {
                p.push(Problem::new(
                    format!("{base}.group_id"),
                    format!("`{id}` is not a security group id"),
                    "write it as sg- followed by 8 or 17 hex digits, or use group_name",
                ));
                None
            }
        }
    } else if let Some(name) = &patch.group_name {
        if name.trim().is_empty() {
            p.push(Problem::new(
                format!("{base}.group_name"),
                "empty name",
                "write the group's name",
            ));
            None
        } else {
            Some(SecurityGroupRef::Name(name.clone()))
        }
    } else {
        let tags = patch.group_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            p.push(Problem::new(
                format!("{base}.group_tags"),
                "an empty tag filter selects every group",
                "list at least one tag",
            ));
            None
        } else {
            Some(SecurityGroupRef::Tags(tags))
        }
    }
}

fn patch_protocol(patch: &SecurityGroupPatch, base: &str, p: &mut Vec<Problem>) -> Option<Protocol> {
    match patch.protocol.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Some(Protocol::Tcp),
        "udp" | "17" => Some(Protocol::Udp),
        "icmp" | "1" => Some(Protocol::Icmp),
        "all" | "-1" => Some(Protocol::All),
        other => {
            p.push(Problem::new(
                format!("{base}.protocol"),
                format!("`{other}` is not a protocol podnet patches"),
                "use tcp, udp, icmp or all",
            ));
            None
        }
    }
}

/// The port range; `None` for `all` and ICMP, and when the ports are wrong.
fn patch_ports(
    patch: &SecurityGroupPatch,
    protocol: Option<Protocol>,
    base: &str,
    p: &mut Vec<Problem>,
) -> Option<(u16, u16)> {
    match (&patch.ports, protocol) {
        (None, Some(Protocol::Tcp | Protocol::Udp)) => {
            p.push(Problem::new(
                format!("{base}.ports"),
                "tcp and udp rules need ports",
                "add e.g. ports = 3306 or ports = \"8080-8090\"",
            ));
            None
        }
        (Some(_), Some(Protocol::All | Protocol::Icmp)) => {
            p.push(Problem::new(
                format!("{base}.ports"),
                "ports are meaningless for protocol all and icmp",
                "remove ports, or use protocol tcp/udp",
            ));
            None
        }
        (Some(spec), _) => match parse_ports(spec) {
            Ok(r) => Some(r),
            Err(msg) => {
                p.push(Problem::new(
                    format!("{base}.ports"),
                    msg,
                    "write a port (3306) or a range (\"1024-65535\") within 0–65535",
                ));
                None
            }
        },
        (None, _) => None,
    }
}

fn patch_description(patch: &SecurityGroupPatch, base: &str, p: &mut Vec<Problem>) -> String {
    let description = patch
        .description
        .clone()
        .unwrap_or_else(|| "pods (VPC CNI custom networking), added by podnet".into());
    let allowed = |c: char| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c);
    if description.len() > 255 || !description.chars().all(allowed) {
        p.push(Problem::new(
            format!("{base}.description"),
            "EC2 rule descriptions are up to 255 characters of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{}!$*",
            "shorten it or remove the other characters",
        ));
    }
    description
}

fn parse_ports(spec: &PortSpec) -> Result<(u16, u16), String> {
    let one = |n: i64| u16::try_from(n).map_err(|_| format!("{n} is not a port"));
    match spec {
        PortSpec::Single(n) => {
            let n = one(*n)?;
            Ok((n, n))
        }
        PortSpec::Range(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: i64 = a.trim().parse().map_err(|_| format!("`{s}` is not a port or range"))?;
            let b: i64 = b.trim().parse().map_err(|_| format!("`{s}` is not a port or range"))?;
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("`{s}` runs backwards"));
            }
            Ok((a, b))
        }
    }
}
