//! IAM for the sandbox's AWS endpoints: the identity-based policy attached
//! to each principal ([`Policies`]), how a request is evaluated against it
//! ([`eval`]), and the answer a denied caller gets. Every principal has
//! `AdministratorAccess` until a policy is attached (`podnet-sandbox up
//! --iam-policy FILE`, or `PUT /_sandbox/iam-policy`); from then on the EC2
//! proxy and the EKS API evaluate each call of that principal, and calls
//! signed with keys the sandbox does not know are refused as AWS refuses
//! them. Which resources and condition keys each call carries is the
//! business of the endpoint (`ec2proxy::authorize`, `eks::authorize`).

pub mod eval;
pub mod policy;
pub mod simulate;

use std::collections::BTreeMap;
use std::sync::RwLock;

use base64::Engine;
use serde_json::{Value, json};

pub use eval::{Decision, Request, Resource, evaluate};
pub use policy::{Policy, PolicyError};

/// The policies attached to principals, by principal ARN.
#[derive(Debug, Default)]
pub struct Policies {
    attached: RwLock<BTreeMap<String, (Value, Policy)>>,
}

impl Policies {
    /// Attaches `document` to `principal` in place of what it had.
    pub fn attach(&self, principal: &str, document: &Value) -> Result<(), PolicyError> {
        let policy = Policy::from_value(document)?;
        self.attached
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(principal.to_string(), (document.clone(), policy));
        Ok(())
    }

    /// Every principal back to `AdministratorAccess`.
    pub fn clear(&self) {
        self.attached.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Whether any policy is attached: only then does the sandbox refuse
    /// unknown credentials (moto, alone, accepts any).
    pub fn enforcing(&self) -> bool {
        !self.attached.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The documents as attached, for the control API.
    pub fn documents(&self) -> BTreeMap<String, Value> {
        self.attached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, (doc, _))| (k.clone(), doc.clone()))
            .collect()
    }

    /// The policy `principal` is held to (`AdministratorAccess` when none
    /// is attached).
    pub fn policy_of(&self, principal: &str) -> Policy {
        self.attached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(principal)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(Policy::administrator)
    }

    /// The decision for `principal`'s request.
    pub fn decide(&self, principal: &str, req: &Request) -> Decision {
        match self.attached.read().unwrap_or_else(|e| e.into_inner()).get(principal) {
            Some((_, policy)) => evaluate(policy, req),
            None => Decision::Allow,
        }
    }
}

/// A denial as AWS words it: "User: ARN is not authorized to perform:
/// ACTION on resource: RESOURCE because no identity-based policy allows the
/// ACTION action" (or "with an explicit deny in an identity-based policy").
pub fn denial_message(principal: &str, action: &str, decision: &Decision) -> Option<String> {
    let (resource, why) = match decision {
        Decision::Allow => return None,
        Decision::ImplicitDeny { resource } => (
            resource,
            format!("because no identity-based policy allows the {action} action"),
        ),
        Decision::ExplicitDeny { resource } => (
            resource,
            "with an explicit deny in an identity-based policy".to_string(),
        ),
    };
    Some(format!(
        "User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"
    ))
}

/// EC2's encoded authorization failure message. Real ones are encrypted
/// for `sts:DecodeAuthorizationMessage`; the sandbox's are the decoded
/// document (its fields as STS returns them) in base64, which the
/// sandbox's STS decodes the same way.
pub fn encoded_message(principal: &str, req: &Request, decision: &Decision) -> String {
    let resource = match decision {
        Decision::ImplicitDeny { resource } | Decision::ExplicitDeny { resource } => resource.clone(),
        Decision::Allow => String::new(),
    };
    let items: Vec<Value> = req
        .resources
        .iter()
        .filter(|r| r.arn == resource)
        .flat_map(|r| r.keys.iter())
        .chain(req.keys.iter())
        .map(|(k, vs)| json!({ "key": k, "values": { "items": vs.iter().map(|v| json!({ "value": v })).collect::<Vec<_>>() } }))
        .collect();
    let doc = json!({
        "allowed": false,
        "explicitDeny": matches!(decision, Decision::ExplicitDeny { .. }),
        "matchedStatements": { "items": [] },
        "failures": { "items": [] },
        "context": {
            "principal": { "arn": principal },
            "action": req.action,
            "resource": resource,
            "conditions": { "items": items },
        }
    });
    base64::engine::general_purpose::STANDARD.encode(doc.to_string())
}

/// The decoded document of an [`encoded_message`], for STS.
pub fn decode_message(encoded: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    serde_json::from_str::<Value>(&text).ok().map(|_| text)
}

/// A Query-API list parameter in order: `PREFIX1`, `PREFIX2`, … (e.g.
/// `ResourceId.` or `ActionNames.member.`), as EC2 and IAM both encode lists.
pub fn query_list<'a>(params: &'a [(String, String)], prefix: &str) -> Vec<&'a str> {
    let mut v: Vec<(u32, &str)> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix)
                .and_then(|n| n.parse().ok())
                .map(|n| (n, v.as_str()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, v)| v).collect()
}

/// The access key id a SigV4-signed request was signed with: from the
/// `Authorization` header's `Credential=AKID/date/region/service/aws4_request`
/// or a presigned URL's `X-Amz-Credential`.
pub fn access_key_id(authorization: Option<&str>, params: &[(String, String)]) -> Option<String> {
    let credential = authorization
        .and_then(|h| h.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string())
        .or_else(|| {
            params
                .iter()
                .find(|(k, _)| k == "X-Amz-Credential")
                .map(|(_, v)| v.clone())
        })?;
    credential.split('/').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_denial_names_principal_action_and_resource_and_the_message_decodes() {
        let p = Policies::default();
        assert!(!p.enforcing());
        p.attach(
            "arn:aws:iam::1:user/a",
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}),
        )
        .unwrap();
        assert!(p.enforcing());
        let req = Request::new(
            "ec2:CreateSubnet",
            vec![Resource::new("arn:aws:ec2:r:1:vpc/vpc-1").key("ec2:Vpc", "x")],
        );
        let d = p.decide("arn:aws:iam::1:user/a", &req);
        let msg = denial_message("arn:aws:iam::1:user/a", "ec2:CreateSubnet", &d).unwrap();
        assert_eq!(
            msg,
            "User: arn:aws:iam::1:user/a is not authorized to perform: ec2:CreateSubnet on resource: arn:aws:ec2:r:1:vpc/vpc-1 because no identity-based policy allows the ec2:CreateSubnet action"
        );
        assert_eq!(p.decide("arn:aws:iam::1:user/other", &req), Decision::Allow);
        let decoded: Value =
            serde_json::from_str(&decode_message(&encoded_message("arn:aws:iam::1:user/a", &req, &d)).unwrap())
                .unwrap();
        assert_eq!(decoded["context"]["action"], "ec2:CreateSubnet");
        assert_eq!(decoded["context"]["conditions"]["items"][0]["key"], "ec2:vpc");
        assert!(p.attach("x", &json!({"Statement": []})).is_ok());
        assert!(p.attach("x", &json!({"Statement": [{"Effect": "Maybe"}]})).is_err());
    }

    #[test]
    fn the_access_key_comes_from_the_header_or_the_presigned_url() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x";
        assert_eq!(access_key_id(Some(h), &[]).as_deref(), Some("AKIDEXAMPLE"));
        let q = vec![(
            "X-Amz-Credential".to_string(),
            "AKID2/20261203/us-east-1/sts/aws4_request".to_string(),
        )];
        assert_eq!(access_key_id(None, &q).as_deref(), Some("AKID2"));
        assert_eq!(access_key_id(None, &[]), None);
    }
}
