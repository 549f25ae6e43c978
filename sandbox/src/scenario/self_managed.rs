//! Self-managed node groups in a scenario (`[[self_managed_groups]]`): an
//! Auto Scaling group on a launch template whose user data joins the
//! cluster, as eksctl's unmanaged node groups and terraform-aws-eks
//! `self_managed_node_groups` make them. EKS knows nothing of them: no
//! managed node group, no `eks.amazonaws.com/nodegroup` label; eksctl labels
//! the nodes `alpha.eksctl.io/nodegroup-name`.
//!
//! The user data is the scenario's, or what the AMI family's bootstrap
//! expects (EKS user guide, "Create self-managed Amazon Linux nodes" and
//! "Create self-managed Bottlerocket nodes"): AL2023 a nodeadm `NodeConfig`
//! in a MIME multi-part, AL2 a `bootstrap.sh` call, Bottlerocket TOML
//! settings. None of the defaults sets max pods: the kubelet then takes the
//! AMI's value for the instance type, blind to custom networking.

use serde::{Deserialize, Serialize};

fn default_family() -> String {
    "AL2023".into()
}

/// The AMI families a self-managed group may run.
pub const FAMILIES: [&str; 3] = ["AL2023", "AL2", "BOTTLEROCKET"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfManagedGroupSpec {
    pub name: String,
    pub instance_type: String,
    /// Instances (the group's desired capacity), spread round-robin over
    /// `zones` (default: all zones).
    pub size: u32,
    #[serde(default)]
    pub min_size: Option<u32>,
    #[serde(default)]
    pub max_size: Option<u32>,
    #[serde(default)]
    pub zones: Option<Vec<String>>,
    /// `AL2023`, `AL2` or `BOTTLEROCKET`.
    #[serde(default = "default_family")]
    pub ami_family: String,
    /// The launch template's user data (plain text), instead of the
    /// family's default.
    #[serde(default)]
    pub user_data: Option<String>,
}

/// What the node's bootstrap needs to reach the cluster.
pub struct Join<'a> {
    pub cluster: &'a str,
    pub endpoint: &'a str,
    /// The cluster CA, base64 (as DescribeCluster gives it).
    pub ca: &'a str,
    pub service_cidr: &'a str,
}

impl SelfManagedGroupSpec {
    pub fn min(&self) -> u32 {
        self.min_size.unwrap_or(self.size.min(1))
    }

    pub fn max(&self) -> u32 {
        self.max_size.unwrap_or(self.size.max(1) * 2)
    }

    /// The launch template's user data.
    pub fn user_data(&self, j: &Join<'_>) -> String {
        if let Some(u) = &self.user_data {
            return u.clone();
        }
        match self.ami_family.as_str() {
            "AL2" => format!(
                "#!/bin/bash\nset -o xtrace\n/etc/eks/bootstrap.sh {} --b64-cluster-ca {} --apiserver-endpoint {} --kubelet-extra-args '--node-labels=alpha.eksctl.io/nodegroup-name={}'\n",
                j.cluster, j.ca, j.endpoint, self.name
            ),
            "BOTTLEROCKET" => format!(
                "[settings.kubernetes]\ncluster-name = \"{}\"\napi-server = \"{}\"\ncluster-certificate = \"{}\"\n\n[settings.kubernetes.node-labels]\n\"alpha.eksctl.io/nodegroup-name\" = \"{}\"\n",
                j.cluster, j.endpoint, j.ca, self.name
            ),
            _ => format!(
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\n\n--MIMEBOUNDARY\nContent-Transfer-Encoding: 7bit\nContent-Type: application/node.eks.aws\nMime-Version: 1.0\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: {}\n    apiServerEndpoint: {}\n    certificateAuthority: {}\n    cidr: {}\n  kubelet:\n    flags:\n      - --node-labels=alpha.eksctl.io/nodegroup-name={}\n\n--MIMEBOUNDARY--\n",
                j.cluster, j.endpoint, j.ca, j.service_cidr, self.name
            ),
        }
    }

    pub fn validate(&self, zones: &[&str]) -> Result<(), String> {
        let who = format!("self-managed group {}", self.name);
        if crate::instance_types::lookup(&self.instance_type).is_none() {
            return Err(format!("{who}: unknown instance type {}", self.instance_type));
        }
        if !FAMILIES.contains(&self.ami_family.as_str()) {
            return Err(format!(
                "{who}: ami_family {:?} is not one of {}",
                self.ami_family,
                FAMILIES.join(", ")
            ));
        }
        if self.min() > self.size || self.size > self.max() {
            return Err(format!(
                "{who}: size {} is outside min_size {} .. max_size {}",
                self.size,
                self.min(),
                self.max()
            ));
        }
        if let Some(zs) = &self.zones {
            if zs.is_empty() {
                return Err(format!("{who}: zones is empty"));
            }
            if let Some(z) = zs.iter().find(|z| !zones.contains(&z.as_str())) {
                return Err(format!("{who}: zone {z} is not a scenario zone"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(family: &str) -> SelfManagedGroupSpec {
        SelfManagedGroupSpec {
            name: "legacy".into(),
            instance_type: "m5.large".into(),
            size: 2,
            min_size: None,
            max_size: None,
            zones: None,
            ami_family: family.into(),
            user_data: None,
        }
    }

    #[test]
    fn default_user_data_sets_no_max_pods_and_names_the_cluster() {
        let j = Join {
            cluster: "demo",
            endpoint: "https://127.0.0.1:1",
            ca: "Q0E=",
            service_cidr: "172.20.0.0/16",
        };
        for f in FAMILIES {
            let u = spec(f).user_data(&j);
            assert!(u.contains("demo"), "{f}: {u}");
            assert_eq!(crate::user_data::max_pods(&u), None, "{f}");
        }
    }

    #[test]
    fn bad_family_and_bounds_are_refused() {
        assert!(spec("UBUNTU").validate(&[]).unwrap_err().contains("ami_family"));
        let mut s = spec("AL2");
        s.max_size = Some(1);
        assert!(s.validate(&[]).unwrap_err().contains("outside"));
    }
}
