//! EC2's eventual consistency, on the proxy: moto is strongly consistent,
//! EC2 is not. "If you run a command to modify or describe a resource that
//! you just created, its ID might not have propagated throughout the system,
//! and you will get an error responding that the resource does not exist"
//! (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
//! When a lag is set (switchable; off by default), for that long (simulated)
//! after a successful call:
//!
//! - `CreateSubnet`: the new subnet is missing from `DescribeSubnets` lists,
//!   and a request naming it (`DescribeSubnets` by id, `CreateTags`,
//!   `AssociateRouteTable`, `ModifySubnetAttribute`, …) answers
//!   `InvalidSubnetID.NotFound`;
//! - `AssociateVpcCidrBlock`: the association stays `associating` in
//!   `DescribeVpcs` (the state EC2 reports until the block is usable,
//!   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_VpcCidrBlockState.html>).

use std::sync::Mutex;
use std::time::Duration;

use xmlparser::{ElementEnd, Token, Tokenizer};

use crate::Clock;

/// What was created a moment ago, until when (simulated).
#[derive(Debug, Clone)]
struct Fresh {
    id: String,
    kind: Kind,
    until: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subnet,
    CidrAssociation,
}

/// The proxy's view of what has not propagated yet.
#[derive(Debug)]
pub struct Consistency {
    clock: Clock,
    lag: Mutex<Option<Duration>>,
    fresh: Mutex<Vec<Fresh>>,
}

impl Consistency {
    pub fn new(clock: Clock, lag: Option<Duration>) -> Self {
        Consistency {
            clock,
            lag: Mutex::new(lag),
            fresh: Mutex::new(Vec::new()),
        }
    }

    /// Turns the lag on (`Some`, simulated) or off; off forgets what is fresh.
    pub fn set_lag(&self, lag: Option<Duration>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
        if lag.is_none() {
            self.fresh.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    pub fn lag(&self) -> Option<Duration> {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn still_fresh(&self, kind: Kind) -> Vec<String> {
        let now = self.clock.elapsed();
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        fresh.retain(|f| f.until > now);
        fresh.iter().filter(|f| f.kind == kind).map(|f| f.id.clone()).collect()
    }

    /// The error EC2 answers instead, when the request names a subnet that
    /// has not propagated yet.
    pub fn refuse(&self, action: &str, form: &[(String, String)]) -> Option<(String, String)> {
        if action == "CreateSubnet" {
            return None;
        }
        let fresh = self.still_fresh(Kind::Subnet);
        let named = form.iter().find(|(k, v)| {
            fresh.contains(v) && (k == "SubnetId" || k.starts_with("SubnetId.") || k.starts_with("ResourceId."))
        })?;
        Some((
            "InvalidSubnetID.NotFound".into(),
            format!("The subnet ID '{}' does not exist", named.1),
        ))
    }

    /// Records what a successful answer created.
    pub fn created(&self, action: &str, answer: &str) {
        let Some(lag) = self.lag() else { return };
        let (kind, tag) = match action {
            "CreateSubnet" => (Kind::Subnet, "subnetId"),
            "AssociateVpcCidrBlock" => (Kind::CidrAssociation, "associationId"),
            _ => return,
        };
        if let Some(id) = first_text(answer, tag) {
            let until = self.clock.elapsed() + lag;
            self.fresh
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Fresh { id, kind, until });
        }
    }

    /// A `Describe*` answer as EC2 would give it a moment after the calls
    /// above; `None` when nothing in it is fresh.
    pub fn describe(&self, action: &str, answer: &str) -> Option<String> {
        match action {
            "DescribeSubnets" => {
                let fresh = self.still_fresh(Kind::Subnet);
                edit_items(answer, "subnetSet", |item| {
                    let hidden = fresh
                        .iter()
                        .any(|id| item.contains(&format!("<subnetId>{id}</subnetId>")));
                    (!hidden).then(|| item.to_string())
                })
            }
            "DescribeVpcs" => {
                let fresh = self.still_fresh(Kind::CidrAssociation);
                edit_items(answer, "cidrBlockAssociationSet", |item| {
                    let associating = fresh
                        .iter()
                        .any(|id| item.contains(&format!("<associationId>{id}</associationId>")));
                    Some(if associating {
                        item.replace("<state>associated</state>", "<state>associating</state>")
                    } else {
                        item.to_string()
                    })
                })
            }
            _ => None,
        }
    }
}

/// The text of the first `<tag>` element.
fn first_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim().to_string())
}

/// Rewrites each `<item>` directly under a `<set>` element with `f` (`None`
/// drops it); `None` when no item changed.
fn edit_items(xml: &str, set: &str, mut f: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut item_start = None;
    for token in Tokenizer::from(xml) {
        let Ok(token) = token else { return None };
        match token {
            Token::ElementStart { local, span, .. } => {
                if local.as_str() == "item" && stack.last() == Some(&set) {
                    item_start = Some(span.start());
                }
                stack.push(local.as_str());
            }
            Token::ElementEnd { end, span } => {
                let closes = match end {
                    ElementEnd::Open => false,
                    ElementEnd::Close(..) | ElementEnd::Empty => true,
                };
                if closes {
                    let closed = stack.pop();
                    if closed == Some("item")
                        && stack.last() == Some(&set)
                        && let Some(start) = item_start.take()
                    {
                        spans.push((start, span.end()));
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    let mut changed = false;
    for (start, end) in spans {
        let item = &xml[start..end];
        out.push_str(&xml[at..start]);
        match f(item) {
            Some(new) => {
                changed |= new != item;
                out.push_str(&new);
            }
            None => changed = true,
        }
        at = end;
    }
    out.push_str(&xml[at..]);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBNETS: &str = "<DescribeSubnetsResponse><subnetSet>\
        <item><subnetId>subnet-old</subnetId><tagSet><item><key>Name</key></item></tagSet></item>\
        <item><subnetId>subnet-new</subnetId><tagSet/></item>\
        </subnetSet></DescribeSubnetsResponse>";

    fn lagging() -> Consistency {
        Consistency::new(Clock::new(1.0), Some(Duration::from_secs(60)))
    }

    #[test]
    fn a_new_subnet_is_missing_and_refused_for_a_while() {
        let c = lagging();
        c.created(
            "CreateSubnet",
            "<CreateSubnetResponse><subnet><subnetId>subnet-new</subnetId></subnet></CreateSubnetResponse>",
        );
        let seen = c.describe("DescribeSubnets", SUBNETS).expect("edited");
        assert!(
            seen.contains("subnet-old") && seen.contains("<key>Name</key>"),
            "{seen}"
        );
        assert!(!seen.contains("subnet-new"), "{seen}");
        let form = vec![
            ("Action".to_string(), "AssociateRouteTable".to_string()),
            ("SubnetId".to_string(), "subnet-new".to_string()),
        ];
        let (code, message) = c.refuse("AssociateRouteTable", &form).expect("refused");
        assert_eq!(code, "InvalidSubnetID.NotFound");
        assert_eq!(message, "The subnet ID 'subnet-new' does not exist");
        let tags = vec![("ResourceId.1".to_string(), "subnet-new".to_string())];
        assert!(c.refuse("CreateTags", &tags).is_some());
        c.set_lag(None);
        assert!(c.refuse("CreateTags", &tags).is_none(), "off: consistent again");
        assert_eq!(c.describe("DescribeSubnets", SUBNETS), None);
    }

    #[test]
    fn a_new_cidr_association_stays_associating() {
        let c = lagging();
        c.created(
            "AssociateVpcCidrBlock",
            "<AssociateVpcCidrBlockResponse><cidrBlockAssociation><associationId>vpc-cidr-assoc-2</associationId></cidrBlockAssociation></AssociateVpcCidrBlockResponse>",
        );
        let vpcs = "<DescribeVpcsResponse><vpcSet><item><vpcId>vpc-1</vpcId><cidrBlockAssociationSet>\
            <item><associationId>vpc-cidr-assoc-1</associationId><cidrBlockState><state>associated</state></cidrBlockState></item>\
            <item><associationId>vpc-cidr-assoc-2</associationId><cidrBlockState><state>associated</state></cidrBlockState></item>\
            </cidrBlockAssociationSet></item></vpcSet></DescribeVpcsResponse>";
        let seen = c.describe("DescribeVpcs", vpcs).expect("edited");
        assert_eq!(seen.matches("<state>associating</state>").count(), 1, "{seen}");
        assert!(seen.contains("vpc-cidr-assoc-1</associationId><cidrBlockState><state>associated"));
    }

    #[test]
    fn without_a_lag_nothing_is_fresh() {
        let c = Consistency::new(Clock::new(1.0), None);
        c.created(
            "CreateSubnet",
            "<CreateSubnetResponse><subnet><subnetId>subnet-new</subnetId></subnet></CreateSubnetResponse>",
        );
        assert_eq!(c.describe("DescribeSubnets", SUBNETS), None);
    }
}
