//! The plan file `podnet init` writes: what was decided for this cluster,
//! each with a comment saying what podnet found, and every other section as
//! `plans/example.toml` documents it (copied from it, so the two never
//! disagree about a key or its default).

use std::fmt::Write;

use super::{Draft, PatchDraft, toml_str};

const EXAMPLE: &str = include_str!("../../plans/example.toml");

/// The file's text.
pub fn render(d: &Draft) -> String {
    let mut out = String::new();
    header(&mut out, d);
    network(&mut out, d);
    pod_subnets(&mut out, d);
    let mut eni = example_section("eniconfig");
    if let Some(sg) = &d.cluster_security_group {
        eni = after_header(&eni, &format!("# This cluster's security group: {sg}."));
    }
    push(&mut out, &eni);
    patches(&mut out, d);
    push(
        &mut out,
        &after_header(&example_section("vpc_cni"), &format!("# Found: {}.", d.addon)),
    );
    push(&mut out, &karpenter(d));
    push(&mut out, &replacement(d));
    push(&mut out, &example_section("waits"));
    push(&mut out, &example_section("control_plane"));
    out
}

fn header(out: &mut String, d: &Draft) {
    let cidrs: Vec<String> = d.vpc_cidrs.iter().map(ToString::to_string).collect();
    let _ = write!(
        out,
        "# The podnet migration plan for EKS cluster {} in {}, written by `podnet init`\n\
         # (podnet {}) from the cluster as it was: Kubernetes {}, VPC {} ({}).\n\
         # Review every comment, then:\n\
         #   podnet -f <this file> validate\n\
         #   podnet -f <this file> plan\n\
         # Keys left out take the default shown; unknown keys are errors.\n\n\
         [cluster]\nname = {}\nregion = {}\n",
        d.cluster,
        d.region,
        env!("CARGO_PKG_VERSION"),
        d.cluster_version,
        d.vpc_id,
        cidrs.join(", "),
        toml_str(&d.cluster),
        toml_str(&d.region),
    );
}

fn network(out: &mut String, d: &Draft) {
    let default_line = format!("secondary_cidr = \"{}\"", crate::spec::model::DEFAULT_SECONDARY_CIDR);
    let chosen = format!(
        "{}\nsecondary_cidr = \"{}\"",
        comment(&format!("Chosen: {}.", d.cidr.why)),
        d.cidr.block
    );
    push(out, &example_section("network").replacen(&default_line, &chosen, 1));
}

fn pod_subnets(out: &mut String, d: &Draft) {
    let zones: Vec<&str> = d.subnets.iter().map(|s| s.availability_zone.as_str()).collect();
    // Explicit sizing needs at least one subnet: with none found, the file
    // stays on auto and `plan` says what is missing.
    let (why, sizing) = if zones.is_empty() {
        (
            "podnet found no availability zone with node subnets to size pod subnets for: `auto` sizes them at \
             `plan` time, or set sizing = \"explicit\" and add one [[pod_subnets.subnet]] per zone your nodes run in."
                .to_string(),
            "auto",
        )
    } else {
        (
            format!(
                "Sized by podnet: {} split evenly over {} (the zones with node subnets), written out so that this \
                 file says exactly what `apply` creates. Change the blocks, or add a zone, as you need.",
                d.cidr.block,
                zones.join(", ")
            ),
            "explicit",
        )
    };
    let _ = write!(
        out,
        "\n[pod_subnets]\n{}\nsizing = \"{sizing}\"\n\
         # Extra tags on every pod subnet (podnet always sets Name, podnet.io/cluster\n\
         # and kubernetes.io/role/cni=1). Default: none.\ntags = {{}}\n",
        comment(&why),
    );
    for f in &d.sizing_findings {
        out.push_str(&comment(&format!("{}: {} ({})", f.id, f.reason, f.fix)));
        out.push('\n');
    }
    for s in &d.subnets {
        let _ = write!(
            out,
            "\n[[pod_subnets.subnet]]\n{}\navailability_zone = {}\ncidr = \"{}\"\nname = {}\n",
            comment(&format!(
                "Next to {}: routed like it, through its route table.",
                s.node_subnets.join(", ")
            )),
            toml_str(&s.availability_zone),
            s.cidr,
            toml_str(&s.name),
        );
    }
}

fn patches(out: &mut String, d: &Draft) {
    out.push_str(&format!(
        "\n{}\n",
        comment(&format!(
            "Security groups that admit the node subnets today. Pods keep their {} source address inside the \
             VPC, so each must admit the secondary CIDR too: podnet adds one ingress rule per table below, and \
             nothing else. Delete a table for a group your pods never call.",
            d.cidr.block
        ))
    ));
    for s in &d.already_admitting {
        out.push_str(&comment(&format!(
            "{} ({}) admits the node subnets on {} and already admits {}: nothing to add.",
            s.group_name, s.group_id, s.ports, d.cidr.block
        )));
        out.push('\n');
    }
    for s in &d.unpatchable {
        out.push_str(&comment(&format!(
            "{} ({}) admits IP protocol {} from {}: a [[security_group_patch]] cannot express it; add the rule for \
             {} by hand if pods need it.",
            s.group_name, s.group_id, s.protocol, s.admits, d.cidr.block
        )));
        out.push('\n');
    }
    if d.patches.is_empty() {
        out.push_str("# None to add: no security group in the VPC admits the node subnets by CIDR.\n");
    }
    for p in &d.patches {
        out.push_str(&patch(p, d));
    }
}

fn patch(p: &PatchDraft, d: &Draft) -> String {
    let s = &p.suggestion;
    let what = if p.group_description.is_empty() {
        String::new()
    } else {
        format!(", \"{}\"", p.group_description)
    };
    let icmp = if s.protocol == "icmp" {
        " A patch admits every ICMP type."
    } else {
        ""
    };
    let mut t = format!(
        "\n[[security_group_patch]]\n{}\n",
        comment(&format!(
            "{} ({}{what}) admits {} from {} today.{icmp}",
            s.group_name,
            s.group_id,
            s.ports,
            p.admits.join(", ")
        ))
    );
    if p.by_name {
        let _ = writeln!(t, "group_name = {}", toml_str(&s.group_name));
    } else {
        let _ = writeln!(
            t,
            "{}\ngroup_id = {}",
            comment(&format!(
                "By id: another group podnet read is also named {}.",
                s.group_name
            )),
            toml_str(&s.group_id),
        );
    }
    let protocol = if s.protocol == "-1" { "all" } else { s.protocol.as_str() };
    let _ = writeln!(t, "protocol = \"{protocol}\"");
    match (protocol, s.from_port, s.to_port) {
        ("tcp" | "udp", Some(f), Some(to)) if f == to => {
            let _ = writeln!(t, "ports = {f}");
        }
        ("tcp" | "udp", Some(f), Some(to)) => {
            let _ = writeln!(t, "ports = \"{f}-{to}\"");
        }
        _ => {}
    }
    let _ = writeln!(
        t,
        "description = {}",
        toml_str(&format!("{} from pods on {} (podnet)", s.ports, d.cidr.block))
    );
    t
}

fn karpenter(d: &Draft) -> String {
    let text = example_section("karpenter");
    let Some(k) = &d.karpenter else {
        return after_header(
            &text,
            "# Found: no Karpenter controller. The step is skipped with a note; nothing to set.",
        );
    };
    let found = format!(
        "Found: Deployment {}/{} with RESERVED_ENIS {}; NodePools {}; EC2NodeClasses {}.",
        k.namespace,
        k.deployment,
        k.reserved_enis.as_deref().unwrap_or("unset"),
        list(&k.nodepools),
        list(&k.nodeclasses),
    );
    after_header(&text, &comment(&found))
        .replacen(
            "# namespace = \"kube-system\"",
            &format!("namespace = {}", toml_str(&k.namespace)),
            1,
        )
        .replacen(
            "# deployment = \"karpenter\"",
            &format!("deployment = {}", toml_str(&k.deployment)),
            1,
        )
}

fn replacement(d: &Draft) -> String {
    let pools = d
        .karpenter
        .as_ref()
        .map(|k| list(&k.nodepools))
        .unwrap_or_else(|| "none".into());
    after_header(
        &example_section("replacement"),
        &comment(&format!(
            "Found: managed node groups {}; Karpenter NodePools {pools}.",
            list(&d.node_groups)
        )),
    )
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// `text` as `# ` comment lines wrapped near 78 columns.
pub(super) fn comment(text: &str) -> String {
    let mut lines = vec![];
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 78 {
            lines.push(std::mem::replace(&mut line, String::from("#")));
        }
        line.push(' ');
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}

/// `[name]` and its keys from the example, without the comment block that
/// introduces the next section.
fn example_section(name: &str) -> String {
    let header = format!("[{name}]");
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim() == header) else {
        return format!("{header}\n");
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('['))
        .map_or(lines.len(), |i| start + 1 + i);
    let keep = lines[start..end]
        .iter()
        .rposition(|l| !(l.starts_with('#') || l.trim().is_empty()))
        .map_or(1, |i| i + 1);
    lines[start..start + keep].join("\n") + "\n"
}

/// `section` with `line` inserted under its header.
fn after_header(section: &str, line: &str) -> String {
    match section.split_once('\n') {
        Some((h, rest)) => format!("{h}\n{line}\n{rest}"),
        None => format!("{section}\n{line}\n"),
    }
}

fn push(out: &mut String, section: &str) {
    out.push('\n');
    out.push_str(section);
}
