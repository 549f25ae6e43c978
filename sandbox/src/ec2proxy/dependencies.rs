//! Deletes EC2 refuses while something still depends on the resource, and
//! moto performs anyway. The proxy asks moto what depends on it first and
//! answers as EC2 does:
//!
//! - `DeleteSubnet` while a network interface is in the subnet: 400
//!   `DependencyViolation`, "The subnet 'subnet-…' has dependencies and
//!   cannot be deleted." (EC2 API Reference, DeleteSubnet: "You must
//!   terminate all running instances in the subnet before you can delete the
//!   subnet"; the CNI's pod ENIs, left detached, hold it the same way.)
//! - `DisassociateVpcCidrBlock` of a block that still holds a subnet: 400
//!   `InvalidCidrBlock.InUse`, "The vpc vpc-… currently has a subnet within
//!   CIDR block …" (Amazon VPC User Guide, "Disassociate an IPv4 CIDR block
//!   from your VPC": "you must first delete all subnets in the CIDR block").
//!
//! Each check is one read of moto's own state; when moto cannot answer it the
//! request goes through unchecked, as before.

use ipnet::Ipv4Net;
use xmlparser::{ElementEnd, Token, Tokenizer};

/// A delete the proxy checks, from the request's form parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    DeleteSubnet { subnet_id: String },
    DisassociateVpcCidrBlock { association_id: String },
}

pub fn guarded(action: &str, pairs: &[(String, String)]) -> Option<Guarded> {
    let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match action {
        "DeleteSubnet" => param("SubnetId").map(|subnet_id| Guarded::DeleteSubnet { subnet_id }),
        "DisassociateVpcCidrBlock" => {
            param("AssociationId").map(|association_id| Guarded::DisassociateVpcCidrBlock { association_id })
        }
        _ => None,
    }
}

/// The read that tells whether the delete may go ahead: a form body.
pub fn first_read(g: &Guarded) -> Vec<(String, String)> {
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    match g {
        Guarded::DeleteSubnet { subnet_id } => vec![
            p("Action", "DescribeNetworkInterfaces"),
            p("Version", "2016-11-15"),
            p("Filter.1.Name", "subnet-id"),
            p("Filter.1.Value.1", subnet_id),
        ],
        Guarded::DisassociateVpcCidrBlock { association_id } => vec![
            p("Action", "DescribeVpcs"),
            p("Version", "2016-11-15"),
            p("Filter.1.Name", "cidr-block-association.association-id"),
            p("Filter.1.Value.1", association_id),
        ],
    }
}

/// For `DeleteSubnet`: the refusal when the answer lists any interface.
pub fn subnet_refusal(subnet_id: &str, enis_answer: &str) -> Option<(String, String)> {
    let enis = texts(enis_answer, "networkInterfaceId");
    (!enis.is_empty()).then(|| {
        (
            "DependencyViolation".to_string(),
            format!("The subnet '{subnet_id}' has dependencies and cannot be deleted."),
        )
    })
}

/// For `DisassociateVpcCidrBlock`: the VPC and the block the association
/// names, from the `DescribeVpcs` answer.
pub fn association(association_id: &str, vpcs_answer: &str) -> Option<(String, Ipv4Net)> {
    let nodes = text_nodes(vpcs_answer);
    let vpc = nodes
        .iter()
        .find(|(path, _)| plain(path).ends_with("vpcSet/item/vpcId"))
        .map(|(_, v)| v.clone())?;
    let (at, _) = nodes
        .iter()
        .find(|(path, v)| plain(path).ends_with("cidrBlockAssociationSet/item/associationId") && v == association_id)?;
    // The cidrBlock of the same item.
    let item = at.rsplit_once('/')?.0;
    let block = nodes
        .iter()
        .find(|(path, _)| {
            path.rsplit_once('/')
                .is_some_and(|(parent, leaf)| parent == item && leaf == "cidrBlock")
        })?
        .1
        .parse()
        .ok()?;
    Some((vpc, block))
}

/// A path without its item numbers.
pub(super) fn plain(path: &str) -> String {
    path.split('/')
        .map(|c| c.split_once('#').map_or(c, |(name, _)| name))
        .collect::<Vec<_>>()
        .join("/")
}

/// The `DescribeSubnets` request for the VPC's subnets.
pub fn subnets_read(vpc_id: &str) -> Vec<(String, String)> {
    vec![
        ("Action".into(), "DescribeSubnets".into()),
        ("Version".into(), "2016-11-15".into()),
        ("Filter.1.Name".into(), "vpc-id".into()),
        ("Filter.1.Value.1".into(), vpc_id.into()),
    ]
}

/// For `DisassociateVpcCidrBlock`: the refusal when a subnet of the VPC lies
/// inside the block.
pub fn block_refusal(vpc_id: &str, block: Ipv4Net, subnets_answer: &str) -> Option<(String, String)> {
    let inside = texts(subnets_answer, "cidrBlock")
        .iter()
        .filter_map(|c| c.parse::<Ipv4Net>().ok())
        .any(|c| block.contains(&c));
    inside.then(|| {
        (
            "InvalidCidrBlock.InUse".to_string(),
            format!("The vpc {vpc_id} currently has a subnet within CIDR block {block}"),
        )
    })
}

/// Every text node of an XML document with its element path (`a/b/c`),
/// each `item` numbered in document order (`item#3`) so that two members of
/// a list never share a path.
pub(super) fn text_nodes(xml: &str) -> Vec<(String, String)> {
    let mut path: Vec<String> = vec![];
    let mut items = 0;
    let mut out = vec![];
    for token in Tokenizer::from(xml) {
        match token {
            Ok(Token::ElementStart { local, .. }) if local.as_str() == "item" => {
                items += 1;
                path.push(format!("item#{items}"));
            }
            Ok(Token::ElementStart { local, .. }) => path.push(local.as_str().to_string()),
            Ok(Token::ElementEnd {
                end: ElementEnd::Close(..) | ElementEnd::Empty,
                ..
            }) => {
                path.pop();
            }
            Ok(Token::Text { text }) if !text.as_str().trim().is_empty() => {
                out.push((path.join("/"), text.as_str().trim().to_string()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

/// The text of every element named `name`.
fn texts(xml: &str, name: &str) -> Vec<String> {
    text_nodes(xml)
        .into_iter()
        .filter(|(path, _)| plain(path).rsplit('/').next() == Some(name))
        .map(|(_, v)| v)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VPCS: &str = r#"<DescribeVpcsResponse><vpcSet><item><vpcId>vpc-1</vpcId><cidrBlock>10.0.0.0/16</cidrBlock>
<cidrBlockAssociationSet><item><associationId>a-1</associationId><cidrBlock>10.0.0.0/16</cidrBlock></item>
<item><associationId>a-2</associationId><cidrBlock>100.64.0.0/16</cidrBlock><cidrBlockState><state>associated</state></cidrBlockState></item>
</cidrBlockAssociationSet></item></vpcSet></DescribeVpcsResponse>"#;

    #[test]
    fn the_association_names_its_vpc_and_block() {
        assert_eq!(
            association("a-2", VPCS),
            Some(("vpc-1".to_string(), "100.64.0.0/16".parse().unwrap()))
        );
        assert_eq!(association("a-9", VPCS), None);
        // An item without its block never borrows the next item's.
        let odd = "<r><vpcSet><item><vpcId>vpc-1</vpcId><cidrBlockAssociationSet>\
                   <item><associationId>a-1</associationId></item>\
                   <item><associationId>a-2</associationId><cidrBlock>100.64.0.0/16</cidrBlock></item>\
                   </cidrBlockAssociationSet></item></vpcSet></r>";
        assert_eq!(association("a-1", odd), None);
    }

    #[test]
    fn a_subnet_inside_the_block_refuses_the_disassociation() {
        let subnets = "<r><subnetSet><item><cidrBlock>10.0.1.0/24</cidrBlock></item>\
                       <item><cidrBlock>100.64.1.0/24</cidrBlock></item></subnetSet></r>";
        let (code, msg) = block_refusal("vpc-1", "100.64.0.0/16".parse().unwrap(), subnets).unwrap();
        assert_eq!(code, "InvalidCidrBlock.InUse");
        assert_eq!(
            msg,
            "The vpc vpc-1 currently has a subnet within CIDR block 100.64.0.0/16"
        );
        let none = "<r><subnetSet><item><cidrBlock>10.0.1.0/24</cidrBlock></item></subnetSet></r>";
        assert_eq!(block_refusal("vpc-1", "100.64.0.0/16".parse().unwrap(), none), None);
    }

    #[test]
    fn an_interface_in_the_subnet_refuses_its_deletion() {
        let enis = "<r><networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId></item></networkInterfaceSet></r>";
        let (code, msg) = subnet_refusal("subnet-1", enis).unwrap();
        assert_eq!(code, "DependencyViolation");
        assert_eq!(msg, "The subnet 'subnet-1' has dependencies and cannot be deleted.");
        assert_eq!(subnet_refusal("subnet-1", "<r><networkInterfaceSet/></r>"), None);
    }

    #[test]
    fn only_the_two_deletes_are_guarded() {
        let pairs = vec![("SubnetId".to_string(), "subnet-1".to_string())];
        assert_eq!(
            guarded("DeleteSubnet", &pairs),
            Some(Guarded::DeleteSubnet {
                subnet_id: "subnet-1".into()
            })
        );
        assert_eq!(guarded("CreateSubnet", &pairs), None);
    }
}
