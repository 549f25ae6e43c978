//! Whole user data as launch templates carry it: each family's max pods set
//! and nothing else changed; what podnet cannot read refused with its lines.

use super::*;

/// A self-managed AL2023 group's user data, as terraform-aws-eks writes it:
/// a MIME multi-part with the NodeConfig and a shell script.
const AL2023: &str = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\n\n--MIMEBOUNDARY\nContent-Transfer-Encoding: 7bit\nContent-Type: application/node.eks.aws\nMime-Version: 1.0\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    apiServerEndpoint: https://EXAMPLE.gr7.ap-northeast-2.eks.amazonaws.com\n    certificateAuthority: LS0tLS1CRUdJTg==\n    cidr: 172.20.0.0/16\n    name: podnet-demo\n  kubelet:\n    flags:\n      - --node-labels=node.kubernetes.io/lifecycle=on-demand\n\n--MIMEBOUNDARY\nContent-Transfer-Encoding: 7bit\nContent-Type: text/x-shellscript\nMime-Version: 1.0\n\n#!/bin/bash\necho \"custom setup\"\n\n--MIMEBOUNDARY--\n";

const AL2: &str = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\nset -ex\n/etc/eks/bootstrap.sh podnet-demo --b64-cluster-ca LS0t --apiserver-endpoint https://x --kubelet-extra-args '--node-labels=eks.amazonaws.com/nodegroup=al2'\n\n--//--\n";

const BOTTLEROCKET: &str = "[settings.kubernetes]\napi-server = \"https://x\"\ncluster-certificate = \"LS0t\"\ncluster-name = \"podnet-demo\"\n\n[settings.kubernetes.node-labels]\n\"team\" = \"batch\"\n";

/// The lines of `after` that are not in `before`, and the reverse.
fn diff(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    (
        a.iter().filter(|l| !b.contains(l)).map(|l| l.to_string()).collect(),
        b.iter().filter(|l| !a.contains(l)).map(|l| l.to_string()).collect(),
    )
}

#[test]
fn each_family_is_told_apart() {
    assert_eq!(AmiFamily::detect(AL2023), Some(AmiFamily::Al2023));
    assert_eq!(AmiFamily::detect(AL2), Some(AmiFamily::Al2));
    assert_eq!(AmiFamily::detect(BOTTLEROCKET), Some(AmiFamily::Bottlerocket));
    assert_eq!(AmiFamily::detect("#!/bin/bash\necho hi\n"), None);
    assert_eq!(
        AmiFamily::from_ami_type("AL2023_ARM_64_STANDARD"),
        Some(AmiFamily::Al2023)
    );
    assert_eq!(AmiFamily::from_ami_type("AL2_x86_64"), Some(AmiFamily::Al2));
    assert_eq!(
        AmiFamily::from_ami_type("BOTTLEROCKET_x86_64"),
        Some(AmiFamily::Bottlerocket)
    );
    assert_eq!(AmiFamily::from_ami_type("CUSTOM"), None);
}

#[test]
fn al2023_gets_kubelet_config_max_pods_in_its_node_config_part_only() {
    let e = set_max_pods(AL2023, AmiFamily::Al2023, 20).unwrap();
    assert_eq!(e.before, None);
    let (added, removed) = diff(AL2023, &e.user_data);
    assert_eq!(added, ["    config:", "      maxPods: 20"]);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(read_max_pods(&e.user_data, AmiFamily::Al2023).unwrap(), Some(20));
    // Twice: the same bytes.
    let again = set_max_pods(&e.user_data, AmiFamily::Al2023, 20).unwrap();
    assert_eq!(again.user_data, e.user_data);
    assert_eq!(again.before, Some(20));
}

#[test]
fn al2_gets_bootstrap_flags_in_its_script_part() {
    let e = set_max_pods(AL2, AmiFamily::Al2, 24).unwrap();
    let (added, removed) = diff(AL2, &e.user_data);
    assert_eq!(
        added,
        [
            "/etc/eks/bootstrap.sh podnet-demo --b64-cluster-ca LS0t --apiserver-endpoint https://x --kubelet-extra-args '--node-labels=eks.amazonaws.com/nodegroup=al2 --max-pods=24' --use-max-pods false"
        ]
    );
    assert_eq!(removed.len(), 1);
    assert_eq!(read_max_pods(&e.user_data, AmiFamily::Al2).unwrap(), Some(24));
    assert_eq!(
        set_max_pods(&e.user_data, AmiFamily::Al2, 24).unwrap().user_data,
        e.user_data
    );
}

#[test]
fn bottlerocket_gets_settings_kubernetes_max_pods() {
    let e = set_max_pods(BOTTLEROCKET, AmiFamily::Bottlerocket, 29).unwrap();
    let (added, removed) = diff(BOTTLEROCKET, &e.user_data);
    assert_eq!(added, ["max-pods = 29"]);
    assert!(removed.is_empty());
    let e2 = set_max_pods(&e.user_data, AmiFamily::Bottlerocket, 20).unwrap();
    assert_eq!(e2.before, Some(29));
    assert_eq!(e2.user_data, e.user_data.replace("max-pods = 29", "max-pods = 20"));
}

#[test]
fn user_data_podnet_cannot_read_is_refused_with_its_lines() {
    let e = set_max_pods("#!/bin/bash\n/opt/my-join.sh --cluster c\n", AmiFamily::Al2, 9).unwrap_err();
    assert!(e.reason.contains("no /etc/eks/bootstrap.sh call"), "{e}");
    assert_eq!(e.lines, ["#!/bin/bash", "/opt/my-join.sh --cluster c"]);
    let e = set_max_pods(AL2, AmiFamily::Al2023, 9).unwrap_err();
    assert!(e.reason.contains("no nodeadm NodeConfig"), "{e}");
    let b64 = AL2023.replace(
        "Content-Transfer-Encoding: 7bit\nContent-Type: application/node.eks.aws",
        "Content-Transfer-Encoding: base64\nContent-Type: application/node.eks.aws",
    );
    let e = set_max_pods(&b64, AmiFamily::Al2023, 9).unwrap_err();
    assert!(e.reason.contains("base64-encoded"), "{e}");
}
