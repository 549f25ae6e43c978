//! IAM's `SimulatePrincipalPolicy` (Query API, `Version=2010-05-08`): how a
//! principal's policy decides each action on the given resources, with the
//! caller's context entries as condition keys — the way AWS lets a tool ask
//! about permissions an API offers no dry run for (EKS, and EC2's
//! `AssociateVpcCidrBlock`). One `EvaluationResult` per action whose
//! `EvalDecision` is the most restrictive over the resources, each
//! resource's own in `ResourceSpecificResults` (IAM API Reference,
//! `EvaluationResult`). The caller needs `iam:SimulatePrincipalPolicy` on
//! the principal it asks about.

use super::eval::{Decision, Request, Resource, evaluate};
use super::policy::{Keys, Policy};

/// A parsed `SimulatePrincipalPolicy` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub principal: String,
    pub actions: Vec<String>,
    /// Empty: `*`.
    pub resources: Vec<String>,
    pub context: Keys,
}

/// `InvalidInput` (400) with IAM's wording, when a required parameter is
/// missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

fn member_list(params: &[(String, String)], prefix: &str) -> Vec<String> {
    super::query_list(params, prefix)
        .into_iter()
        .map(str::to_string)
        .collect()
}

impl Simulation {
    pub fn parse(params: &[(String, String)]) -> Result<Simulation, InvalidInput> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let principal = get("PolicySourceArn").ok_or_else(|| {
            InvalidInput("1 validation error detected: Value null at 'policySourceArn' failed to satisfy constraint: Member must not be null".into())
        })?;
        let actions = member_list(params, "ActionNames.member.");
        if actions.is_empty() {
            return Err(InvalidInput(
                "1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null".into(),
            ));
        }
        let mut context = Keys::new();
        for n in 1.. {
            let Some(name) = get(&format!("ContextEntries.member.{n}.ContextKeyName")) else {
                break;
            };
            let values = member_list(params, &format!("ContextEntries.member.{n}.ContextKeyValues.member."));
            context.entry(name.to_ascii_lowercase()).or_default().extend(values);
        }
        Ok(Simulation {
            principal,
            actions,
            resources: member_list(params, "ResourceArns.member."),
            context,
        })
    }
}

fn word(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "allowed",
        Decision::ImplicitDeny { .. } => "implicitDeny",
        Decision::ExplicitDeny { .. } => "explicitDeny",
    }
}

fn rank(d: &Decision) -> u8 {
    match d {
        Decision::Allow => 0,
        Decision::ImplicitDeny { .. } => 1,
        Decision::ExplicitDeny { .. } => 2,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Each action's decision per resource, under `policy`.
pub fn decide(policy: &Policy, sim: &Simulation) -> Vec<(String, Vec<(String, Decision)>)> {
    let resources: Vec<String> = if sim.resources.is_empty() {
        vec!["*".into()]
    } else {
        sim.resources.clone()
    };
    sim.actions
        .iter()
        .map(|action| {
            let per = resources
                .iter()
                .map(|arn| {
                    let req = Request {
                        action: action.clone(),
                        resources: vec![Resource {
                            arn: arn.clone(),
                            keys: sim.context.clone(),
                        }],
                        keys: Keys::new(),
                    };
                    (arn.clone(), evaluate(policy, &req))
                })
                .collect();
            (action.clone(), per)
        })
        .collect()
}

/// The `SimulatePrincipalPolicyResponse` document.
pub fn response(results: &[(String, Vec<(String, Decision)>)]) -> String {
    let mut out = String::from(
        "<SimulatePrincipalPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>",
    );
    for (action, per) in results {
        let worst = per
            .iter()
            .map(|(_, d)| d)
            .max_by_key(|d| rank(d))
            .unwrap_or(&Decision::Allow);
        let name = if per.len() == 1 { per[0].0.as_str() } else { "*" };
        out.push_str(&format!(
            "<member><EvalActionName>{}</EvalActionName><EvalResourceName>{}</EvalResourceName><EvalDecision>{}</EvalDecision><MatchedStatements/><MissingContextValues/><ResourceSpecificResults>",
            esc(action),
            esc(name),
            word(worst)
        ));
        for (arn, d) in per {
            out.push_str(&format!(
                "<member><EvalResourceName>{}</EvalResourceName><EvalResourceDecision>{}</EvalResourceDecision><MatchedStatements/><MissingContextValues/></member>",
                esc(arn),
                word(d)
            ));
        }
        out.push_str("</ResourceSpecificResults></member>");
    }
    out.push_str(&format!(
        "</EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>",
        uuid::Uuid::new_v4()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn each_action_gets_the_most_restrictive_decision_over_its_resources() {
        let sim = Simulation::parse(&params(
            "Action=SimulatePrincipalPolicy&PolicySourceArn=arn%3Aaws%3Aiam%3A%3A1%3Auser%2Fa\
             &ActionNames.member.1=eks%3AUpdateAddon&ActionNames.member.2=ec2%3ACreateTags\
             &ResourceArns.member.1=arn%3Aaws%3Aec2%3Ar%3A1%3Asubnet%2Fs-1&ResourceArns.member.2=arn%3Aaws%3Aec2%3Ar%3A1%3Asubnet%2Fs-2\
             &ContextEntries.member.1.ContextKeyName=ec2%3AVpc&ContextEntries.member.1.ContextKeyValues.member.1=arn%3Aaws%3Aec2%3Ar%3A1%3Avpc%2Fv\
             &ContextEntries.member.1.ContextKeyType=string",
        ))
        .unwrap();
        assert_eq!(sim.principal, "arn:aws:iam::1:user/a");
        assert_eq!(sim.context["ec2:vpc"], ["arn:aws:ec2:r:1:vpc/v"]);
        let policy = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"ec2:CreateTags","Resource":"arn:aws:ec2:r:1:subnet/s-1",
            "Condition":{"StringEquals":{"ec2:Vpc":"arn:aws:ec2:r:1:vpc/v"}}}]}"#,
        )
        .unwrap();
        let results = decide(&policy, &sim);
        let xml = response(&results);
        assert!(xml.contains("<EvalActionName>eks:UpdateAddon</EvalActionName><EvalResourceName>*</EvalResourceName><EvalDecision>implicitDeny</EvalDecision>"), "{xml}");
        assert!(xml.contains("<EvalActionName>ec2:CreateTags</EvalActionName><EvalResourceName>*</EvalResourceName><EvalDecision>implicitDeny</EvalDecision>"), "{xml}");
        assert!(xml.contains("<EvalResourceName>arn:aws:ec2:r:1:subnet/s-1</EvalResourceName><EvalResourceDecision>allowed</EvalResourceDecision>"), "{xml}");
        assert!(Simulation::parse(&params("PolicySourceArn=x")).is_err());
    }
}
