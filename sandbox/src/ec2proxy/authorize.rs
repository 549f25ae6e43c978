//! What an EC2 request asks IAM for: the action, the resources it touches
//! and their condition keys, per the Service Authorization Reference
//! ("Actions, resources, and condition keys for Amazon EC2"). Describe
//! calls have no resource-level permissions and are authorized against `*`;
//! the writes podnet (and a platform engineer's scripts) make name their
//! resources by ARN, with `ec2:Vpc` and `aws:ResourceTag/…` read from moto
//! and `aws:RequestTag/…`/`aws:TagKeys` from the request. A create that
//! tags on creation is also authorized for `ec2:CreateTags` with
//! `ec2:CreateAction` ("Grant permission to tag Amazon EC2 resources during
//! creation", Amazon EC2 User Guide). Writes not listed here are
//! authorized against `*` only.

use std::collections::BTreeMap;

use super::dependencies::{plain, text_nodes};
use crate::iam::{Request, Resource, query_list};

/// A resource the proxy reads from moto before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Subnet(String),
    SecurityGroup(String),
    RouteTable(String),
    NetworkInterface(String),
    Vpc(String),
    LaunchTemplateId(String),
    LaunchTemplateName(String),
    /// A route table association: its route table and subnet.
    RouteTableAssociation(String),
    /// A VPC CIDR block association: its VPC.
    VpcCidrAssociation(String),
}

/// What moto said about a looked-up resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// The ARN resource type: `subnet`, `security-group`, …
    pub kind: &'static str,
    pub id: String,
    pub vpc: Option<String>,
    pub tags: Vec<(String, String)>,
    /// For an association: its subnet.
    pub subnet: Option<String>,
}

type Params = [(String, String)];

fn param<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The resource a tag or delete call names by id, from its prefix.
fn by_prefix(id: &str) -> Option<Lookup> {
    let id = id.to_string();
    Some(match id.split('-').next()? {
        "subnet" => Lookup::Subnet(id),
        "sg" => Lookup::SecurityGroup(id),
        "rtb" => Lookup::RouteTable(id),
        "eni" => Lookup::NetworkInterface(id),
        "vpc" => Lookup::Vpc(id),
        "lt" => Lookup::LaunchTemplateId(id),
        _ => return None,
    })
}

/// What must be read from moto to authorize `action`.
pub fn lookups(action: &str, p: &Params) -> Vec<Lookup> {
    let one = |k: &str, f: fn(String) -> Lookup| param(p, k).map(|v| f(v.to_string())).into_iter().collect();
    match action {
        "AssociateVpcCidrBlock" | "CreateSubnet" => one("VpcId", Lookup::Vpc),
        "DisassociateVpcCidrBlock" => one("AssociationId", Lookup::VpcCidrAssociation),
        "AuthorizeSecurityGroupIngress"
        | "AuthorizeSecurityGroupEgress"
        | "RevokeSecurityGroupIngress"
        | "RevokeSecurityGroupEgress" => one("GroupId", Lookup::SecurityGroup),
        "CreateTags" | "DeleteTags" => query_list(p, "ResourceId.").into_iter().filter_map(by_prefix).collect(),
        "AssociateRouteTable" => {
            let mut v: Vec<Lookup> = one("RouteTableId", Lookup::RouteTable);
            v.extend(one("SubnetId", Lookup::Subnet));
            v
        }
        "ReplaceRouteTableAssociation" => {
            let mut v: Vec<Lookup> = one("RouteTableId", Lookup::RouteTable);
            v.extend(one("AssociationId", Lookup::RouteTableAssociation));
            v
        }
        "DisassociateRouteTable" => one("AssociationId", Lookup::RouteTableAssociation),
        "CreateLaunchTemplateVersion" => match param(p, "LaunchTemplateId") {
            Some(id) => vec![Lookup::LaunchTemplateId(id.to_string())],
            None => one("LaunchTemplateName", Lookup::LaunchTemplateName),
        },
        "DeleteNetworkInterface" => one("NetworkInterfaceId", Lookup::NetworkInterface),
        "DeleteSubnet" => one("SubnetId", Lookup::Subnet),
        _ => vec![],
    }
}

/// The moto read for a lookup (a query form).
pub fn describe(l: &Lookup) -> Vec<(String, String)> {
    let form = |action: &str, k: &str, v: &str| {
        vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), "2016-11-15".to_string()),
            (k.to_string(), v.to_string()),
        ]
    };
    let filter = |action: &str, name: &str, v: &str| {
        let mut f = form(action, "Filter.1.Name", name);
        f.push(("Filter.1.Value.1".to_string(), v.to_string()));
        f
    };
    match l {
        Lookup::Subnet(id) => form("DescribeSubnets", "SubnetId.1", id),
        Lookup::SecurityGroup(id) => form("DescribeSecurityGroups", "GroupId.1", id),
        Lookup::RouteTable(id) => form("DescribeRouteTables", "RouteTableId.1", id),
        Lookup::NetworkInterface(id) => form("DescribeNetworkInterfaces", "NetworkInterfaceId.1", id),
        Lookup::Vpc(id) => form("DescribeVpcs", "VpcId.1", id),
        Lookup::LaunchTemplateId(id) => form("DescribeLaunchTemplates", "LaunchTemplateId.1", id),
        Lookup::LaunchTemplateName(n) => form("DescribeLaunchTemplates", "LaunchTemplateName.1", n),
        Lookup::RouteTableAssociation(id) => {
            filter("DescribeRouteTables", "association.route-table-association-id", id)
        }
        Lookup::VpcCidrAssociation(id) => filter("DescribeVpcs", "cidr-block-association.association-id", id),
    }
}

/// Text nodes with their element paths.
type Nodes = Vec<(String, String)>;

/// The first top-level item of `set` in a describe answer: its `id_elem`,
/// `vpcId` and tags, and the item's own text nodes (for its children).
fn first_item(answer: &str, set: &str, id_elem: &str) -> Option<(Found, Nodes)> {
    let nodes = text_nodes(answer);
    let suffix = format!("{set}/item/{id_elem}");
    let (at, id) = nodes
        .iter()
        .find(|(path, _)| plain(path).ends_with(&suffix) && path.matches("/item#").count() == 1)?;
    let item = at.rsplit_once('/')?.0.to_string();
    let child = |leaf: &str| {
        nodes
            .iter()
            .find(|(path, _)| path.strip_prefix(&item).is_some_and(|rest| rest == format!("/{leaf}")))
            .map(|(_, v)| v.clone())
    };
    let mut tags: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let tag_prefix = format!("{item}/tagSet/");
    for (path, v) in &nodes {
        if let Some(rest) = path.strip_prefix(&tag_prefix)
            && let Some((tag_item, leaf)) = rest.split_once('/')
        {
            let e = tags.entry(tag_item.to_string()).or_default();
            match leaf {
                "key" => e.0 = Some(v.clone()),
                "value" => e.1 = Some(v.clone()),
                _ => {}
            }
        }
    }
    let found = Found {
        id: id.clone(),
        vpc: child("vpcId"),
        tags: tags
            .into_values()
            .filter_map(|(k, v)| Some((k?, v.unwrap_or_default())))
            .collect(),
        ..Found::default()
    };
    let item_nodes = nodes.into_iter().filter(|(p, _)| p.starts_with(&item)).collect();
    Some((found, item_nodes))
}

/// What moto's answer says about the looked-up resource; `None` when it is
/// not there (the call then goes on to moto, which answers its NotFound).
pub fn found(l: &Lookup, answer: &str) -> Option<Found> {
    let (kind, set, id_elem) = match l {
        Lookup::Subnet(_) => ("subnet", "subnetSet", "subnetId"),
        Lookup::SecurityGroup(_) => ("security-group", "securityGroupInfo", "groupId"),
        Lookup::RouteTable(_) | Lookup::RouteTableAssociation(_) => ("route-table", "routeTableSet", "routeTableId"),
        Lookup::NetworkInterface(_) => ("network-interface", "networkInterfaceSet", "networkInterfaceId"),
        Lookup::Vpc(_) | Lookup::VpcCidrAssociation(_) => ("vpc", "vpcSet", "vpcId"),
        Lookup::LaunchTemplateId(_) | Lookup::LaunchTemplateName(_) => {
            ("launch-template", "launchTemplates", "launchTemplateId")
        }
    };
    let (mut f, nodes) = first_item(answer, set, id_elem)?;
    f.kind = kind;
    if kind == "vpc" {
        f.vpc = Some(f.id.clone());
    }
    if let Lookup::RouteTableAssociation(assoc) = l {
        // The subnet of the association item that carries this id.
        let (at, _) = nodes
            .iter()
            .find(|(path, v)| v == assoc && plain(path).ends_with("associationSet/item/routeTableAssociationId"))?;
        let assoc_item = at.rsplit_once('/')?.0;
        f.subnet = nodes
            .iter()
            .find(|(path, _)| *path == format!("{assoc_item}/subnetId"))
            .map(|(_, v)| v.clone());
    }
    Some(f)
}

/// How ARNs are made: `arn:aws:ec2:REGION:ACCOUNT:TYPE/ID`.
#[derive(Debug, Clone)]
pub struct Arns {
    pub region: String,
    pub account: String,
}

impl Arns {
    fn arn(&self, kind: &str, id: &str) -> String {
        format!("arn:aws:ec2:{}:{}:{kind}/{id}", self.region, self.account)
    }

    fn resource(&self, f: &Found) -> Resource {
        let mut r = Resource::new(self.arn(f.kind, &f.id));
        if let Some(vpc) = &f.vpc {
            r = r.key("ec2:Vpc", self.arn("vpc", vpc));
        }
        for (k, v) in &f.tags {
            r = r.key(&format!("aws:ResourceTag/{k}"), v.clone());
        }
        r
    }
}

/// The tags a `TagSpecification.N` of `resource_type` puts on the new
/// resource; `CreateTags`' own `Tag.N` when `spec` is false.
fn request_tags(p: &Params, resource_type: Option<&str>) -> Vec<(String, String)> {
    let mut out = vec![];
    let prefixes: Vec<String> = match resource_type {
        None => vec!["Tag.".into()],
        Some(ty) => (1..=50)
            .filter(|n| param(p, &format!("TagSpecification.{n}.ResourceType")) == Some(ty))
            .map(|n| format!("TagSpecification.{n}.Tag."))
            .collect(),
    };
    for prefix in prefixes {
        for m in 1..=50 {
            match param(p, &format!("{prefix}{m}.Key")) {
                Some(k) => out.push((
                    k.to_string(),
                    param(p, &format!("{prefix}{m}.Value")).unwrap_or("").to_string(),
                )),
                None => break,
            }
        }
    }
    out
}

fn with_request_tags(mut r: Request, tags: &[(String, String)], values: bool) -> Request {
    for (k, v) in tags {
        if values {
            r = r.key(&format!("aws:RequestTag/{k}"), v.clone());
        }
        r = r.key("aws:TagKeys", k.clone());
    }
    r
}

/// The IAM requests `action` makes (all must be allowed), from its
/// parameters and what the lookups found.
pub fn requests(action: &str, p: &Params, found: &[Found], arns: &Arns) -> Vec<Request> {
    let iam = format!("ec2:{action}");
    let of = |kind: &str| -> Vec<Resource> {
        found
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| arns.resource(f))
            .collect()
    };
    let assoc_subnet = || -> Vec<Resource> {
        let ids: Vec<&String> = found.iter().filter_map(|f| f.subnet.as_ref()).collect();
        ids.into_iter()
            .map(|s| {
                let vpc = found.iter().find_map(|f| f.vpc.clone());
                arns.resource(&Found {
                    kind: "subnet",
                    id: s.clone(),
                    vpc,
                    ..Found::default()
                })
            })
            .collect()
    };
    match action {
        "CreateSubnet" => {
            let vpc = param(p, "VpcId").unwrap_or("*");
            let mut subnet = Resource::new(arns.arn("subnet", "*")).key("ec2:Vpc", arns.arn("vpc", vpc));
            if let Some(az) = param(p, "AvailabilityZone") {
                subnet = subnet.key("ec2:AvailabilityZone", az);
            }
            let tags = request_tags(p, Some("subnet"));
            let mut resources = of("vpc");
            if resources.is_empty() {
                resources.push(Resource::new(arns.arn("vpc", vpc)));
            }
            resources.push(subnet.clone());
            let mut out = vec![with_request_tags(Request::new(iam, resources), &tags, true)];
            if !tags.is_empty() {
                let tagging = Request::new("ec2:CreateTags", vec![subnet]).key("ec2:CreateAction", action);
                out.push(with_request_tags(tagging, &tags, true));
            }
            out
        }
        "CreateTags" => vec![with_request_tags(
            Request::new(iam, found.iter().map(|f| arns.resource(f)).collect()),
            &request_tags(p, None),
            true,
        )],
        "DeleteTags" => vec![with_request_tags(
            Request::new(iam, found.iter().map(|f| arns.resource(f)).collect()),
            &request_tags(p, None),
            false,
        )],
        "ReplaceRouteTableAssociation" | "DisassociateRouteTable" => {
            let mut resources = if action == "DisassociateRouteTable" {
                of("route-table")
            } else {
                // The new table, not the association's current one.
                let id = param(p, "RouteTableId").unwrap_or("*");
                found
                    .iter()
                    .filter(|f| f.kind == "route-table" && f.id == id)
                    .map(|f| arns.resource(f))
                    .take(1)
                    .collect()
            };
            resources.extend(assoc_subnet());
            vec![Request::new(iam, resources)]
        }
        _ => {
            let resources: Vec<Resource> = found.iter().map(|f| arns.resource(f)).collect();
            vec![Request::new(iam, resources)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::{Decision, Policy, evaluate};

    fn pairs(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    const ARNS: fn() -> Arns = || Arns {
        region: "r".into(),
        account: "1".into(),
    };

    const SUBNETS: &str = r#"<DescribeSubnetsResponse><subnetSet><item><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId>
<ipv6CidrBlockAssociationSet/><tagSet><item><key>podnet.io/cluster</key><value>demo</value></item><item><key>Name</key><value>pods-a</value></item></tagSet></item></subnetSet></DescribeSubnetsResponse>"#;

    const ROUTES: &str = r#"<DescribeRouteTablesResponse><routeTableSet><item><routeTableId>rtb-1</routeTableId><vpcId>vpc-1</vpcId>
<associationSet><item><routeTableAssociationId>rtbassoc-0</routeTableAssociationId><main>true</main></item>
<item><routeTableAssociationId>rtbassoc-9</routeTableAssociationId><subnetId>subnet-7</subnetId></item></associationSet>
<tagSet/></item></routeTableSet></DescribeRouteTablesResponse>"#;

    #[test]
    fn describe_answers_give_the_vpc_the_tags_and_the_associations_subnet() {
        let f = found(&Lookup::Subnet("subnet-1".into()), SUBNETS).unwrap();
        assert_eq!(
            (f.kind, f.id.as_str(), f.vpc.as_deref()),
            ("subnet", "subnet-1", Some("vpc-1"))
        );
        assert_eq!(
            f.tags,
            vec![
                ("podnet.io/cluster".to_string(), "demo".to_string()),
                ("Name".to_string(), "pods-a".to_string())
            ]
        );
        let a = found(&Lookup::RouteTableAssociation("rtbassoc-9".into()), ROUTES).unwrap();
        assert_eq!((a.id.as_str(), a.subnet.as_deref()), ("rtb-1", Some("subnet-7")));
        assert_eq!(
            found(
                &Lookup::Subnet("x".into()),
                "<DescribeSubnetsResponse><subnetSet/></DescribeSubnetsResponse>"
            ),
            None
        );
    }

    #[test]
    fn create_subnet_asks_for_the_vpc_the_tagged_subnet_and_tagging_on_create() {
        let p = pairs(
            "Action=CreateSubnet&VpcId=vpc-1&CidrBlock=100.64.0.0%2F19&AvailabilityZone=az-a&TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Key=podnet.io%2Fcluster&TagSpecification.1.Tag.1.Value=demo",
        );
        assert_eq!(lookups("CreateSubnet", &p), vec![Lookup::Vpc("vpc-1".into())]);
        let vpc = Found {
            kind: "vpc",
            id: "vpc-1".into(),
            vpc: Some("vpc-1".into()),
            ..Found::default()
        };
        let reqs = requests("CreateSubnet", &p, &[vpc], &ARNS());
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].resources[1].arn, "arn:aws:ec2:r:1:subnet/*");
        assert_eq!(reqs[0].keys["aws:requesttag/podnet.io/cluster"], ["demo"]);
        assert_eq!(reqs[1].action, "ec2:CreateTags");
        assert_eq!(reqs[1].keys["ec2:createaction"], ["CreateSubnet"]);
        let policy = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"ec2:CreateSubnet","Resource":"arn:aws:ec2:r:1:vpc/vpc-1"},
            {"Effect":"Allow","Action":"ec2:CreateSubnet","Resource":"arn:aws:ec2:r:1:subnet/*",
             "Condition":{"StringEquals":{"aws:RequestTag/podnet.io/cluster":"demo","ec2:Vpc":"arn:aws:ec2:r:1:vpc/vpc-1"}}}]}"#,
        )
        .unwrap();
        assert_eq!(evaluate(&policy, &reqs[0]), Decision::Allow);
        assert!(
            matches!(evaluate(&policy, &reqs[1]), Decision::ImplicitDeny { .. }),
            "tagging needs ec2:CreateTags"
        );
    }

    #[test]
    fn deletes_and_tags_carry_the_resources_own_tags_and_vpc() {
        let p = pairs("Action=DeleteTags&ResourceId.1=subnet-1&Tag.1.Key=podnet.io%2Fcluster");
        assert_eq!(lookups("DeleteTags", &p), vec![Lookup::Subnet("subnet-1".into())]);
        let f = found(&Lookup::Subnet("subnet-1".into()), SUBNETS).unwrap();
        let r = &requests("DeleteTags", &p, &[f], &ARNS())[0];
        assert_eq!(r.resources[0].arn, "arn:aws:ec2:r:1:subnet/subnet-1");
        assert_eq!(r.resources[0].keys["ec2:vpc"], ["arn:aws:ec2:r:1:vpc/vpc-1"]);
        assert_eq!(r.resources[0].keys["aws:resourcetag/podnet.io/cluster"], ["demo"]);
        assert_eq!(r.keys["aws:tagkeys"], ["podnet.io/cluster"]);
        assert!(lookups("DescribeSubnets", &p).is_empty());
        let d = &requests("DescribeSubnets", &[], &[], &ARNS())[0];
        assert!(d.resources.is_empty(), "describe calls are authorized against *");
    }
}
