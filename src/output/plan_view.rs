//! Human rendering of a [`PlanDocument`]: discovery summary, preflight
//! findings, suggested security groups, each step's changes with `+ ~ -`,
//! and the capacity report.

use super::{paint, style, table};
use crate::engine::{Action, After, StepPlan, change::show_value};
use crate::migration::PlanDocument;
use crate::planner::{CapacityReport, Severity};

fn heading(s: &str) -> String {
    paint(style::BOLD, s)
}

fn action_symbol(a: Action) -> String {
    match a {
        Action::Create => paint(style::GREEN, "+"),
        Action::Update => paint(style::YELLOW, "~"),
        Action::Replace => paint(style::YELLOW, "-/+"),
        Action::Delete => paint(style::RED, "-"),
        Action::NoOp => " ".to_string(),
    }
}

/// One step's changes, coloured.
pub fn step_lines(plan: &StepPlan) -> Vec<String> {
    let mut out = Vec::new();
    for c in &plan.changes {
        let mut head = format!(
            "  {} {} {}",
            action_symbol(c.action),
            c.resource_type,
            paint(style::BOLD, &c.name)
        );
        if let Some(r) = &c.reason {
            head.push_str(&paint(style::DIM, format!("  ({r})")));
        }
        out.push(head);
        if c.action == Action::NoOp {
            continue;
        }
        let width = c.attributes.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for a in &c.attributes {
            let after = match &a.after {
                After::Known(v) => show_value(v),
                After::KnownAfterApply => paint(style::DIM, "(known after apply)"),
            };
            out.push(match &a.before {
                Some(b) => format!("      {:width$} = {} -> {}", a.name, show_value(b), after),
                None => format!("      {:width$} = {}", a.name, after),
            });
        }
    }
    for n in &plan.notes {
        out.push(paint(style::DIM, format!("  note: {}", n.replace('\n', "\n        "))));
    }
    out
}

pub fn render(doc: &PlanDocument) -> Vec<String> {
    let mut out = Vec::new();
    discovery_section(doc, &mut out);
    findings_section(doc, &mut out);
    suggestions_section(doc, &mut out);
    steps_section(doc, &mut out);
    capacity_section(&doc.capacity, &mut out);
    summary_line(doc, &mut out);
    out
}

fn discovery_section(doc: &PlanDocument, out: &mut Vec<String>) {
    let d = &doc.discovery;
    out.push(heading(&format!(
        "Cluster {} ({}), Kubernetes {}",
        d.cluster, doc.region, d.kubernetes_version
    )));
    out.push(format!("  VPC            {} ({})", d.vpc_id, d.vpc_cidrs.join(", ")));
    for (i, s) in d.node_subnets.iter().enumerate() {
        out.push(format!(
            "  {}{s}",
            if i == 0 { "node subnets   " } else { "               " }
        ));
    }
    out.push(format!(
        "  node groups    {}",
        if d.node_groups.is_empty() {
            "none".into()
        } else {
            d.node_groups.join(", ")
        }
    ));
    out.push(format!("  nodes / pods   {} / {}", d.nodes, d.pods));
    out.push(format!(
        "  VPC CNI        {} (custom networking {})",
        d.vpc_cni,
        match d.custom_networking {
            crate::discovery::CustomNetworking::On => "on",
            crate::discovery::CustomNetworking::Off => "off",
        }
    ));
    out.push(format!(
        "  Karpenter      {}",
        d.karpenter.as_deref().unwrap_or("not installed")
    ));
    if !d.eniconfigs.is_empty() {
        out.push(format!("  ENIConfigs     {}", d.eniconfigs.join(", ")));
    }
    out.push(String::new());
}

fn findings_section(doc: &PlanDocument, out: &mut Vec<String>) {
    findings_list(&doc.findings, out);
}

fn findings_list(findings: &[crate::planner::Finding], out: &mut Vec<String>) {
    out.push(heading("Preflight"));
    if findings.is_empty() {
        out.push(format!("  {} no findings", paint(style::GREEN, "✓")));
    }
    for f in findings {
        let tag = match f.severity {
            Severity::Error => paint(style::RED.bold(), "error  "),
            Severity::Warning => paint(style::YELLOW.bold(), "warning"),
            Severity::Note => paint(style::CYAN, "note   "),
        };
        out.push(format!("  {tag} [{}] {}", f.id, f.reason));
        out.push(paint(style::DIM, format!("          fix: {}", f.fix)));
    }
    out.push(String::new());
}

fn suggestions_section(doc: &PlanDocument, out: &mut Vec<String>) {
    if !doc.suggestions.is_empty() {
        out.push(heading("Security groups that admit the node subnets today"));
        let rows: Vec<Vec<String>> = doc
            .suggestions
            .iter()
            .map(|s| {
                let state = if s.done {
                    paint(style::GREEN, "admits the pod CIDR already")
                } else if s.planned {
                    paint(style::GREEN, "patched by this plan")
                } else {
                    paint(
                        style::YELLOW,
                        "not in the plan: add a [[security_group_patch]] if pods call it",
                    )
                };
                vec![
                    format!("{} ({})", s.group_id, s.group_name),
                    s.ports.clone(),
                    s.admits.clone(),
                    state,
                ]
            })
            .collect();
        for l in table(&["GROUP", "PORTS", "ADMITS", ""], &rows) {
            out.push(format!("  {l}"));
        }
        out.push(String::new());
    }
}

fn steps_section(doc: &PlanDocument, out: &mut Vec<String>) {
    step_list(&doc.steps, out);
}

fn step_list(steps: &[crate::engine::StepPlan], out: &mut Vec<String>) {
    if !steps.is_empty() {
        out.push(heading("Steps"));
        for (i, s) in steps.iter().enumerate() {
            let mark = if s.has_changes() { "" } else { " (no changes)" };
            out.push(format!(
                "{}. {} — {}{}",
                i + 1,
                paint(style::BOLD, &s.step),
                s.description,
                paint(style::DIM, mark)
            ));
            out.extend(step_lines(s));
        }
        out.push(String::new());
    }
}

fn capacity_section(c: &CapacityReport, out: &mut Vec<String>) {
    out.push(heading("Capacity"));
    let rows: Vec<Vec<String>> = c
        .zones
        .iter()
        .map(|z| {
            vec![
                z.zone.clone(),
                format!("{} shared ({} free)", z.shared_usable, z.shared_free),
                z.pod_subnet.clone().unwrap_or_else(|| "-".into()),
                format!("{} for pods only", z.pod_usable),
            ]
        })
        .collect();
    for l in table(&["AZ", "POD IPs NOW", "POD SUBNET", "POD IPs AFTER"], &rows) {
        out.push(format!("  {l}"));
    }
    out.push(String::new());
    let rows: Vec<Vec<String>> = c
        .instance_types
        .iter()
        .map(|t| {
            vec![
                t.instance_type.clone(),
                t.nodes.to_string(),
                format!("{} -> {}", t.eks_before, t.eks_after),
                t.karpenter_unreserved.to_string(),
                t.karpenter_reserved.to_string(),
            ]
        })
        .collect();
    let reserved = c.instance_types.first().map(|t| t.reserved_enis).unwrap_or(1);
    let kr = format!("KARPENTER reservedENIs={reserved}");
    for l in table(
        &[
            "INSTANCE TYPE",
            "NODES",
            "MAX PODS (EKS)",
            "KARPENTER reservedENIs=0",
            &kr,
        ],
        &rows,
    ) {
        out.push(format!("  {l}"));
    }
    out.push(String::new());
    if !c.groups.is_empty() {
        let rows: Vec<Vec<String>> = c
            .groups
            .iter()
            .map(|g| {
                vec![
                    format!("{} {}", g.kind, g.name),
                    g.nodes.to_string(),
                    g.pods.to_string(),
                    format!("{} -> {}", g.capacity_before, g.capacity_after),
                    if g.extra_nodes > 0 {
                        paint(style::YELLOW, format!("+{}", g.extra_nodes))
                    } else {
                        "0".into()
                    },
                ]
            })
            .collect();
        for l in table(&["GROUP", "NODES", "PODS", "POD SLOTS", "MORE NODES"], &rows) {
            out.push(format!("  {l}"));
        }
        out.push(String::new());
    }
    if !c.nodes_to_replace.is_empty() {
        out.push(format!(
            "  {} node(s) to replace (existing nodes never switch to custom networking): {}",
            c.nodes_to_replace.len(),
            c.nodes_to_replace
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push(String::new());
    }
}

fn summary_line(doc: &PlanDocument, out: &mut Vec<String>) {
    let errors = doc.findings.iter().filter(|f| f.severity == Severity::Error).count();
    if errors > 0 {
        out.push(paint(
            style::RED.bold(),
            format!("Preflight found {errors} error(s); nothing can be applied until they are fixed."),
        ));
    } else if doc.changes_pending {
        out.push(format!("{} {}.", heading("Plan:"), doc.summary));
    } else {
        out.push(format!(
            "{} the cluster matches the plan.",
            paint(style::GREEN.bold(), "No changes:")
        ));
    }
}

/// `plan --rollback`: what stops it, then each reverse step's changes.
pub fn render_rollback(cluster: &str, plan: &crate::rollback::RollbackPlan) -> Vec<String> {
    let mut out = vec![
        heading(&format!("Rollback of the migration of {cluster}")),
        String::new(),
    ];
    findings_list(&plan.findings, &mut out);
    step_list(&plan.steps, &mut out);
    let mut counts = crate::engine::ChangeCounts::default();
    for step in &plan.steps {
        counts.add(step.counts());
    }
    if plan.has_errors() {
        out.push(paint(
            style::RED.bold(),
            "The rollback cannot run until the errors above are resolved; nothing was changed.",
        ));
    } else {
        out.push(format!("{} {counts}.", heading("Rollback plan:")));
    }
    out
}
