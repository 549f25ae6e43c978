//! `DescribeInstanceTypes`, turned into the same [`InstanceInfo`] the embedded
//! table holds, so `max-pods --from-ec2` and the table share one formula.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{InstanceType, InstanceTypeInfo};

use crate::capacity::{InstanceInfo, InstanceTable, UnknownInstanceType};

#[derive(Debug, thiserror::Error)]
pub enum InstanceTypesError {
    #[error(transparent)]
    Unknown(#[from] UnknownInstanceType),
    /// The call itself failed, classified like every other AWS call (a
    /// denial is a permission error naming `ec2:DescribeInstanceTypes`).
    #[error(transparent)]
    Api(crate::aws::AwsError),
    #[error("EC2 returned {instance_type} without {field}; cannot compute max pods for it")]
    Incomplete { instance_type: String, field: &'static str },
}

/// Asks EC2 for the named types, in the order given.
pub async fn describe(client: &Client, names: &[String]) -> Result<Vec<InstanceInfo>, InstanceTypesError> {
    let wanted: Vec<InstanceType> = names.iter().map(|n| InstanceType::from(n.as_str())).collect();
    let mut pages = client
        .describe_instance_types()
        .set_instance_types(Some(wanted))
        .into_paginator()
        .send();
    let mut found: Vec<InstanceInfo> = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            let code = e.code().unwrap_or_default().to_string();
            let msg = e.message().unwrap_or_default().to_string();
            if code == "InvalidInstanceType" {
                // EC2 names only the first bad type; point at the closest known one.
                let bad = names
                    .iter()
                    .find(|n| msg.contains(n.as_str()))
                    .cloned()
                    .unwrap_or_else(|| names.join(","));
                let suggestions = InstanceTable::embedded()
                    .lookup(&bad)
                    .err()
                    .map(|e| e.suggestions)
                    .unwrap_or_default();
                return InstanceTypesError::Unknown(UnknownInstanceType {
                    name: bad,
                    suggestions,
                    asked_ec2: true,
                });
            }
            InstanceTypesError::Api(crate::aws::error::from_sdk(
                "ec2",
                "DescribeInstanceTypes",
                Some(names.join(",")),
                e,
            ))
        })?;
        for it in page.instance_types() {
            found.push(convert(it)?);
        }
    }
    names
        .iter()
        .map(|n| {
            found
                .iter()
                .find(|f| f.instance_type == n.to_ascii_lowercase())
                .cloned()
                .ok_or_else(|| {
                    InstanceTypesError::Unknown(UnknownInstanceType {
                        name: n.clone(),
                        suggestions: InstanceTable::embedded()
                            .lookup(n)
                            .err()
                            .map(|e| e.suggestions)
                            .unwrap_or_default(),
                        asked_ec2: true,
                    })
                })
        })
        .collect()
}

fn convert(it: &InstanceTypeInfo) -> Result<InstanceInfo, InstanceTypesError> {
    let name = it.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default();
    let incomplete = |field| InstanceTypesError::Incomplete {
        instance_type: name.clone(),
        field,
    };
    let net = it.network_info().ok_or_else(|| incomplete("NetworkInfo"))?;
    let default_idx = net.default_network_card_index().unwrap_or(0);
    let all_enis = net
        .maximum_network_interfaces()
        .ok_or_else(|| incomplete("MaximumNetworkInterfaces"))?;
    // The VPC CNI uses only the default card; fall back to the instance-wide
    // figure only when EC2 lists no cards (older single-card answers).
    let card_enis = net
        .network_cards()
        .iter()
        .find(|c| c.network_card_index() == Some(default_idx))
        .and_then(|c| c.maximum_network_interfaces())
        .unwrap_or(all_enis);
    Ok(InstanceInfo {
        instance_type: name.clone(),
        hypervisor: it.hypervisor().map(|h| h.as_str().to_string()).unwrap_or_default(),
        bare_metal: it.bare_metal().unwrap_or(false),
        vcpus: it
            .v_cpu_info()
            .and_then(|v| v.default_v_cpus())
            .ok_or_else(|| incomplete("VCpuInfo"))? as u32,
        memory_mib: it.memory_info().and_then(|m| m.size_in_mib()).unwrap_or(0) as u64,
        default_network_card_index: default_idx as u32,
        default_card_max_enis: card_enis as u32,
        max_enis: all_enis as u32,
        network_cards: net.maximum_network_cards().unwrap_or(1) as u32,
        ipv4_per_eni: net
            .ipv4_addresses_per_interface()
            .ok_or_else(|| incomplete("Ipv4AddressesPerInterface"))? as u32,
    })
}
