//! `podnet max-pods`: amazon-eks-ami's max-pods-calculator.sh for one or more
//! instance types, with Karpenter's ENI-limited view beside it.

use super::{Context, ExitStatus};
use crate::aws::{self, AwsTarget};
use crate::capacity::{CniSettings, InstanceInfo, InstanceTable, UnknownInstanceType, karpenter_max_pods, max_pods};
use crate::cli::MaxPodsArgs;
use crate::output::{Printer, table};
use anyhow::{Result, bail};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Row {
    instance_type: String,
    max_pods: u32,
    uncapped_max_pods: u32,
    cap: u32,
    enis_for_pods: u32,
    ipv4_per_eni: u32,
    vcpus: u32,
    custom_networking: bool,
    prefix_delegation: bool,
    karpenter_reserved_enis: u32,
    karpenter_max_pods: u32,
    source: &'static str,
}

pub async fn run(ctx: &Context, args: &MaxPodsArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let (infos, source) = instance_infos(ctx, args).await?;

    let cni = CniSettings {
        custom_networking: args.cni_custom_networking,
        prefix_delegation: args.cni_prefix_delegation,
        version: args.cni_version,
        max_eni: args.cni_max_eni,
    };
    let reserved = args
        .karpenter_reserved_enis
        .unwrap_or(u32::from(args.cni_custom_networking));
    let rows: Vec<Row> = infos
        .iter()
        .map(|info| {
            let m = max_pods(info, &cni, args.show_max_allowed);
            Row {
                instance_type: m.instance_type.clone(),
                max_pods: m.max_pods,
                uncapped_max_pods: m.uncapped,
                cap: m.cap,
                enis_for_pods: m.enis_for_pods,
                ipv4_per_eni: m.ipv4_per_eni,
                vcpus: m.vcpus,
                custom_networking: cni.custom_networking,
                prefix_delegation: m.prefix_delegation,
                karpenter_reserved_enis: reserved,
                karpenter_max_pods: karpenter_max_pods(info, reserved),
                source,
            }
        })
        .collect();

    p.json(&rows);
    if p.is_json() {
        return Ok(ExitStatus::Success);
    }
    if p.is_quiet() {
        // The calculator script's output: one number per type, for scripts.
        for r in &rows {
            p.out(r.max_pods);
        }
        return Ok(ExitStatus::Success);
    }
    print_table(p, &rows, reserved, args.show_max_allowed);
    let mode = assumptions(&cni, args.show_max_allowed, source);
    p.info(format!("({})", mode.join("; ")));
    Ok(ExitStatus::Success)
}

/// The instance types' data, from EC2 or the embedded table, and which.
async fn instance_infos(ctx: &Context, args: &MaxPodsArgs) -> Result<(Vec<InstanceInfo>, &'static str)> {
    Ok(if args.from_ec2 {
        let cfg = aws::sdk_config(&AwsTarget {
            region: ctx.global.region.clone(),
            profile: ctx.global.profile.clone(),
        })
        .await;
        if cfg.region().is_none() {
            bail!("--from-ec2 needs a region: pass --region or set AWS_REGION");
        }
        let client = crate::aws::retry::ec2_client(&cfg);
        (
            aws::instance_types::describe(&client, &args.instance_types).await?,
            "ec2",
        )
    } else {
        (lookup_all(&args.instance_types)?, "embedded")
    })
}

fn print_table(p: &Printer, rows: &[Row], reserved: u32, show_max_allowed: bool) {
    let karpenter_header = format!("KARPENTER (reservedENIs={reserved})");
    let lines = table(
        &[
            "INSTANCE TYPE",
            "vCPUs",
            "ENIs FOR PODS",
            "IPv4/ENI",
            "MAX PODS",
            &karpenter_header,
        ],
        &rows
            .iter()
            .map(|r| {
                let max = if !show_max_allowed && r.uncapped_max_pods > r.cap {
                    format!("{} (cap; {} uncapped)", r.max_pods, r.uncapped_max_pods)
                } else {
                    r.max_pods.to_string()
                };
                vec![
                    r.instance_type.clone(),
                    r.vcpus.to_string(),
                    r.enis_for_pods.to_string(),
                    r.ipv4_per_eni.to_string(),
                    max,
                    r.karpenter_max_pods.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    for l in lines {
        p.out(l);
    }
}

/// What the numbers assume: CNI version and settings, the cap, the data source.
fn assumptions(cni: &CniSettings, show_max_allowed: bool, source: &str) -> Vec<String> {
    let mut mode = vec![format!("VPC CNI {}", cni.version)];
    mode.push(if cni.custom_networking {
        "custom networking".into()
    } else {
        "no custom networking".to_string()
    });
    if cni.prefix_delegation {
        mode.push("prefix delegation (Nitro only)".into());
    }
    if let Some(n) = cni.max_eni {
        mode.push(format!("at most {n} ENIs"));
    }
    mode.push(if show_max_allowed {
        "uncapped".into()
    } else {
        "capped at 110 (250 above 30 vCPUs)".to_string()
    });
    mode.push(format!(
        "instance data: {}",
        if source == "ec2" {
            "EC2 DescribeInstanceTypes"
        } else {
            "embedded table"
        }
    ));
    mode
}

fn lookup_all(names: &[String]) -> Result<Vec<InstanceInfo>> {
    let table = InstanceTable::embedded();
    let mut found = Vec::new();
    let mut unknown: Vec<UnknownInstanceType> = Vec::new();
    for n in names {
        match table.lookup(n) {
            Ok(i) => found.push(i.clone()),
            Err(e) => unknown.push(e),
        }
    }
    if !unknown.is_empty() {
        let msgs: Vec<String> = unknown.iter().map(|u| u.to_string()).collect();
        bail!("{}", msgs.join("\n"));
    }
    Ok(found)
}
