//! `CreateLaunchTemplateVersion` with a `SourceVersion`, as EC2 does it:
//! "Snapshots of the launch template data are taken from the source version.
//! The new version inherits the same launch parameters as the source
//! version, except for parameters that you explicitly specify in
//! LaunchTemplateData" (EC2 API Reference, CreateLaunchTemplateVersion,
//! <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplateVersion.html>).
//! moto ignores `SourceVersion` and stores only the request's data, so the
//! proxy reads the source version from moto (`DescribeLaunchTemplateVersions`)
//! and adds its parameters to the forwarded request.
//!
//! Copied (the request parameters of `RequestLaunchTemplateData`, EC2 API
//! Reference): `ImageId`, `InstanceType`, `KeyName`, `UserData`,
//! `EbsOptimized`, `SecurityGroupId.N`, `SecurityGroup.N`,
//! `IamInstanceProfile.Arn`/`.Name`, `MetadataOptions.*` (`HttpTokens`,
//! `HttpPutResponseHopLimit`, `HttpEndpoint`, `HttpProtocolIpv6`,
//! `InstanceMetadataTags`) and `TagSpecification.N` (resource type and
//! tags). Not copied: block device mappings, network interfaces, placement
//! and the other parameters podnet's node groups do not use.
//!
//! The unit of "explicitly specify" is a top-level parameter: a request
//! that sets any `MetadataOptions.*` (or any `SecurityGroupId.N`) takes none
//! of the source's, so lists and structures are never mixed half and half.

use std::collections::BTreeSet;

use xmlparser::{ElementEnd, Token, Tokenizer};

const DATA: &str = "LaunchTemplateData.";

/// The form parameters of a request body, in order.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The `DescribeLaunchTemplateVersions` request that reads the source
/// version of a `CreateLaunchTemplateVersion` request; `None` when the
/// request names no `SourceVersion` (or no template).
pub fn describe_source(request: &[(String, String)]) -> Option<Vec<(String, String)>> {
    let source = param(request, "SourceVersion").filter(|v| !v.is_empty())?;
    let template = ["LaunchTemplateId", "LaunchTemplateName"]
        .into_iter()
        .find_map(|k| param(request, k).map(|v| (k.to_string(), v.to_string())))?;
    let mut out = vec![("Action".to_string(), "DescribeLaunchTemplateVersions".to_string())];
    if let Some(v) = param(request, "Version") {
        out.push(("Version".into(), v.into()));
    }
    out.push(template);
    out.push(("LaunchTemplateVersion.1".into(), source.into()));
    Some(out)
}

/// The top-level launch template parameter a form key belongs to
/// (`LaunchTemplateData.MetadataOptions.HttpTokens` → `MetadataOptions`).
fn group(key: &str) -> Option<&str> {
    key.strip_prefix(DATA)?.split('.').next()
}

/// The request's parameters plus the source version's in every top-level
/// parameter the request does not set itself.
pub fn merge(request: &[(String, String)], source: &[(String, String)]) -> Vec<(String, String)> {
    let explicit: BTreeSet<&str> = request.iter().filter_map(|(k, _)| group(k)).collect();
    let mut out = request.to_vec();
    out.extend(
        source
            .iter()
            .filter(|(k, _)| group(k).is_some_and(|g| !explicit.contains(g)))
            .cloned(),
    );
    out
}

/// An XML element: its local name, text and children.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn items(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter(|c| c.name == "item")
    }
}

/// XML text with the predefined and numeric character references resolved.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let ent = &after[..end];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| ent.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..i + 1 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The document element of an XML document.
fn parse(xml: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = vec![Element::default()];
    for token in Tokenizer::from(xml) {
        match token.map_err(|e| e.to_string())? {
            Token::ElementStart { local, .. } => stack.push(Element {
                name: local.as_str().to_string(),
                ..Default::default()
            }),
            Token::ElementEnd {
                end: ElementEnd::Close(..) | ElementEnd::Empty,
                ..
            } => {
                let done = stack.pop().ok_or("unbalanced XML")?;
                stack.last_mut().ok_or("unbalanced XML")?.children.push(done);
            }
            Token::Text { text } => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&unescape(text.as_str()));
                }
            }
            Token::Cdata { text, .. } => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(text.as_str());
                }
            }
            _ => {}
        }
    }
    let mut root = stack.pop().filter(|_| stack.is_empty()).ok_or("unbalanced XML")?;
    root.children.pop().ok_or_else(|| "an empty XML document".to_string())
}

/// `httpTokens` → `HttpTokens`: the request's spelling of a response member.
fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The launch template data of the first version in a
/// `DescribeLaunchTemplateVersions` answer, as `CreateLaunchTemplateVersion`
/// form parameters (`LaunchTemplateData.ImageId`, ...). No version, no
/// parameters.
pub fn source_parameters(xml: &str) -> Result<Vec<(String, String)>, String> {
    let doc = parse(xml)?;
    let Some(data) = doc
        .child("launchTemplateVersionSet")
        .and_then(|s| s.items().next())
        .and_then(|v| v.child("launchTemplateData"))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut put = |k: String, v: &str| out.push((format!("{DATA}{k}"), v.to_string()));
    for e in &data.children {
        match e.name.as_str() {
            "imageId" | "instanceType" | "keyName" | "userData" | "ebsOptimized" => put(upper_first(&e.name), &e.text),
            "securityGroupIdSet" => {
                for (i, g) in e.items().enumerate() {
                    put(format!("SecurityGroupId.{}", i + 1), &g.text);
                }
            }
            "securityGroupSet" => {
                for (i, g) in e.items().enumerate() {
                    put(format!("SecurityGroup.{}", i + 1), &g.text);
                }
            }
            "iamInstanceProfile" | "metadataOptions" => {
                for f in &e.children {
                    put(format!("{}.{}", upper_first(&e.name), upper_first(&f.name)), &f.text);
                }
            }
            "tagSpecificationSet" => {
                for (i, spec) in e.items().enumerate() {
                    let n = i + 1;
                    if let Some(rt) = spec.child("resourceType") {
                        put(format!("TagSpecification.{n}.ResourceType"), &rt.text);
                    }
                    for (j, tag) in spec.child("tagSet").into_iter().flat_map(Element::items).enumerate() {
                        let m = j + 1;
                        put(
                            format!("TagSpecification.{n}.Tag.{m}.Key"),
                            tag.child("key").map(|k| k.text.as_str()).unwrap_or(""),
                        );
                        put(
                            format!("TagSpecification.{n}.Tag.{m}.Value"),
                            tag.child("value").map(|v| v.text.as_str()).unwrap_or(""),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// moto's answer, as `DescribeLaunchTemplateVersions` gave it for a
    /// template created with all the copied parameters.
    const MOTO: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<DescribeLaunchTemplateVersionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><launchTemplateVersionSet><item><launchTemplateId>lt-1dd60f2f7633709bf</launchTemplateId><launchTemplateName>lt1</launchTemplateName><versionNumber>1</versionNumber><createTime>2026-12-02T14:19:44.000Z</createTime><createdBy>arn:aws:iam::123456789012:root</createdBy><defaultVersion>true</defaultVersion><launchTemplateData><ebsOptimized>true</ebsOptimized><iamInstanceProfile><name>prof</name></iamInstanceProfile><imageId>ami-06e9e3574a0459db2</imageId><instanceType>m5.large</instanceType><keyName>k1</keyName><userData>dXNlcmRhdGE=</userData><tagSpecificationSet><item><resourceType>instance</resourceType><tagSet><item><key>Name</key><value>a&amp;b</value></item></tagSet></item></tagSpecificationSet><securityGroupIdSet><item>sg-1</item><item>sg-2</item></securityGroupIdSet><metadataOptions><httpTokens>required</httpTokens><httpPutResponseHopLimit>2</httpPutResponseHopLimit></metadataOptions></launchTemplateData></item></launchTemplateVersionSet><requestId>request-id</requestId></DescribeLaunchTemplateVersionsResponse>"#;

    #[test]
    fn moto_xml_becomes_request_parameters() {
        let got = source_parameters(MOTO).unwrap();
        let want = pairs(&[
            ("LaunchTemplateData.EbsOptimized", "true"),
            ("LaunchTemplateData.IamInstanceProfile.Name", "prof"),
            ("LaunchTemplateData.ImageId", "ami-06e9e3574a0459db2"),
            ("LaunchTemplateData.InstanceType", "m5.large"),
            ("LaunchTemplateData.KeyName", "k1"),
            ("LaunchTemplateData.UserData", "dXNlcmRhdGE="),
            ("LaunchTemplateData.TagSpecification.1.ResourceType", "instance"),
            ("LaunchTemplateData.TagSpecification.1.Tag.1.Key", "Name"),
            ("LaunchTemplateData.TagSpecification.1.Tag.1.Value", "a&b"),
            ("LaunchTemplateData.SecurityGroupId.1", "sg-1"),
            ("LaunchTemplateData.SecurityGroupId.2", "sg-2"),
            ("LaunchTemplateData.MetadataOptions.HttpTokens", "required"),
            ("LaunchTemplateData.MetadataOptions.HttpPutResponseHopLimit", "2"),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn no_version_no_parameters() {
        let empty = r#"<DescribeLaunchTemplateVersionsResponse><launchTemplateVersionSet/></DescribeLaunchTemplateVersionsResponse>"#;
        assert_eq!(source_parameters(empty).unwrap(), Vec::new());
        let bare = r#"<R><launchTemplateVersionSet><item><launchTemplateData/></item></launchTemplateVersionSet></R>"#;
        assert_eq!(source_parameters(bare).unwrap(), Vec::new());
        assert!(source_parameters("<a><b></a>").is_err());
    }

    #[test]
    fn references_are_resolved() {
        assert_eq!(
            unescape("a&amp;b &lt;&gt; &#65;&#x42; &bogus; &"),
            "a&b <> AB &bogus; &"
        );
    }

    #[test]
    fn the_request_keeps_what_it_sets() {
        let request = pairs(&[
            ("Action", "CreateLaunchTemplateVersion"),
            ("LaunchTemplateId", "lt-1"),
            ("SourceVersion", "1"),
            ("LaunchTemplateData.ImageId", "ami-new"),
            ("LaunchTemplateData.MetadataOptions.HttpTokens", "optional"),
        ]);
        let source = pairs(&[
            ("LaunchTemplateData.ImageId", "ami-old"),
            ("LaunchTemplateData.InstanceType", "m5.large"),
            ("LaunchTemplateData.MetadataOptions.HttpTokens", "required"),
            ("LaunchTemplateData.MetadataOptions.HttpPutResponseHopLimit", "2"),
            ("LaunchTemplateData.SecurityGroupId.1", "sg-1"),
        ]);
        let merged = merge(&request, &source);
        let mut want = request.clone();
        want.extend(pairs(&[
            ("LaunchTemplateData.InstanceType", "m5.large"),
            ("LaunchTemplateData.SecurityGroupId.1", "sg-1"),
        ]));
        assert_eq!(merged, want);
    }

    #[test]
    fn the_source_is_described_by_id_or_name() {
        let by_id = pairs(&[
            ("Action", "CreateLaunchTemplateVersion"),
            ("Version", "2016-11-15"),
            ("LaunchTemplateId", "lt-1"),
            ("SourceVersion", "3"),
        ]);
        assert_eq!(
            describe_source(&by_id).unwrap(),
            pairs(&[
                ("Action", "DescribeLaunchTemplateVersions"),
                ("Version", "2016-11-15"),
                ("LaunchTemplateId", "lt-1"),
                ("LaunchTemplateVersion.1", "3"),
            ])
        );
        let by_name = pairs(&[("LaunchTemplateName", "ng"), ("SourceVersion", "1")]);
        assert_eq!(
            describe_source(&by_name).unwrap()[1],
            ("LaunchTemplateName".to_string(), "ng".to_string())
        );
        assert_eq!(describe_source(&pairs(&[("LaunchTemplateId", "lt-1")])), None);
        assert_eq!(describe_source(&pairs(&[("SourceVersion", "1")])), None);
    }
}
