//! The Auto Scaling Query API on the wire: `POST /` with a form body
//! (`Action=…&Version=2011-01-01`, lists as `Name.member.N`), answers as
//! `<ActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">`
//! documents and errors as `<ErrorResponse><Error><Type>Sender</Type>
//! <Code>…</Code><Message>…</Message></Error>…` — the awsQuery protocol the
//! AWS CLI, boto3 and the Rust SDK speak
//! (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/CommonErrors.html>).
//! With an IAM policy attached to the caller, each call is authorized as
//! `autoscaling:<Action>` first (`AccessDenied`, 403), and pointing a group
//! at a launch template also needs `ec2:RunInstances` on it (EC2 Auto
//! Scaling User Guide, "Control Amazon EC2 launch template usage in Auto
//! Scaling groups").

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::model::{AsError, Group, Groups, TemplateSpec, Update};
use crate::auth::Auth;
use crate::calls::{CallLog, Service};

const NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

#[derive(Clone)]
pub struct AsHttp {
    pub groups: Arc<Groups>,
    pub calls: Arc<CallLog>,
    pub auth: Arc<Auth>,
    /// moto's EC2, to check the launch templates groups are pointed at.
    pub ec2: Option<aws_sdk_ec2::Client>,
    pub region: String,
    pub account: String,
}

pub fn router(state: AsHttp) -> Router {
    Router::new().fallback(handle).with_state(state)
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn xml(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

fn error(e: &AsError) -> Response {
    xml(
        e.status,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            e.code,
            esc(&e.message),
            uuid::Uuid::new_v4()
        ),
    )
}

fn ok(action: &str, result: &str) -> Response {
    // Operations with no output answer with the metadata alone.
    let result = if result.is_empty() {
        String::new()
    } else {
        format!("<{action}Result>{result}</{action}Result>")
    };
    xml(
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\">{result}<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            uuid::Uuid::new_v4()
        ),
    )
}

/// The request's parameters.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    /// `Name.member.1`, `Name.member.2`, … in order.
    pub fn members(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.member.");
        let mut v: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, val)| {
                k.strip_prefix(&prefix)
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, val.clone()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    fn int(&self, k: &str) -> Result<Option<u32>, AsError> {
        self.get(k)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    AsError::validation(format!(
                        "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must have value greater than or equal to 0",
                        lower_first(k)
                    ))
                })
            })
            .transpose()
    }

    fn required(&self, k: &str) -> Result<&str, AsError> {
        self.get(k).ok_or_else(|| {
            AsError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(k)
            ))
        })
    }
}

fn lower_first(k: &str) -> String {
    let mut c = k.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

async fn handle(State(st): State<AsHttp>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut raw: Vec<(String, String)> = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    raw.extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    let p = Params(raw);
    let action = p.get("Action").unwrap_or_default().to_string();
    let mutating = !action.starts_with("Describe");
    let path = format!("{} {}", parts.method, parts.uri.path());
    if let Some(f) = st.calls.take_fault(Service::Autoscaling, &action) {
        st.calls
            .record(Service::Autoscaling, &action, mutating, f.status, true, &path);
        return error(&AsError {
            status: f.status,
            code: f.code.clone(),
            message: f.message_or_default(),
        });
    }
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let resp = match authorize(&st, authorization, &action, &p) {
        Err(e) => Err(e),
        Ok(()) => dispatch(&st, &action, &p).await,
    };
    let (status, resp) = match resp {
        Ok(r) => (200, r),
        Err(e) => (e.status, error(&e)),
    };
    st.calls
        .record(Service::Autoscaling, &action, mutating, status, false, &path);
    resp
}

async fn dispatch(st: &AsHttp, action: &str, p: &Params) -> Result<Response, AsError> {
    match action {
        "DescribeAutoScalingGroups" => describe_groups(st, p),
        "DescribeAutoScalingInstances" => describe_instances(st, p),
        "UpdateAutoScalingGroup" => update_group(st, p).await,
        "SetDesiredCapacity" => {
            let name = p.required("AutoScalingGroupName")?;
            let desired = p.int("DesiredCapacity")?.ok_or_else(|| {
                AsError::validation("1 validation error detected: Value null at 'desiredCapacity' failed to satisfy constraint: Member must not be null")
            })?;
            st.groups.set_desired(name, desired)?;
            Ok(ok(action, ""))
        }
        "TerminateInstanceInAutoScalingGroup" => terminate(st, p),
        other => Err(AsError {
            status: 400,
            code: "InvalidAction".into(),
            message: format!("The action {other} is not valid for this web service."),
        }),
    }
}

fn authorize(st: &AsHttp, authorization: Option<&str>, action: &str, p: &Params) -> Result<(), AsError> {
    let iam = st.auth.iam();
    if !iam.enforcing() {
        return Ok(());
    }
    let Some(principal) = crate::iam::access_key_id(authorization, &p.0).and_then(|k| st.auth.principal_by_key(&k))
    else {
        return Err(AsError {
            status: 403,
            code: "InvalidClientTokenId".into(),
            message: "The security token included in the request is invalid.".into(),
        });
    };
    // The group named, or the group of the instance named
    // (TerminateInstanceInAutoScalingGroup): the Service Authorization
    // Reference lists the autoScalingGroup resource for both.
    let group = match p.get("AutoScalingGroupName") {
        Some(n) => st.groups.get(n),
        None => p.get("InstanceId").and_then(|id| {
            st.groups
                .instances(&[id.to_string()])
                .first()
                .and_then(|(g, _, _)| st.groups.get(g))
        }),
    };
    let resource = group.map(|g| g.arn).unwrap_or_else(|| "*".to_string());
    let mut asks = vec![crate::iam::Request::new(
        format!("autoscaling:{action}"),
        vec![crate::iam::Resource::new(resource)],
    )];
    if action == "UpdateAutoScalingGroup"
        && let Some(id) = p.get("LaunchTemplate.LaunchTemplateId")
    {
        asks.push(crate::iam::Request::new(
            "ec2:RunInstances",
            vec![crate::iam::Resource::new(format!(
                "arn:aws:ec2:{}:{}:launch-template/{id}",
                st.region, st.account
            ))],
        ));
    }
    for ask in asks {
        let decision = iam.decide(&principal.arn, &ask);
        if let Some(why) = crate::iam::denial_message(&principal.arn, &ask.action, &decision) {
            // Auto Scaling words a launch template it may not use its own
            // way (User Guide, troubleshooting: "You are not authorized to
            // use launch template").
            let message = match (ask.action.as_str(), p.get("LaunchTemplate.LaunchTemplateId")) {
                ("ec2:RunInstances", Some(id)) => format!("You are not authorized to use launch template: {id}"),
                _ => why,
            };
            return Err(AsError {
                status: 403,
                code: "AccessDenied".into(),
                message,
            });
        }
    }
    Ok(())
}

/// `MaxRecords` (at most `limit`: 100 for groups, 50 for instances) and
/// where `NextToken` resumes.
fn page(p: &Params, limit: u32) -> Result<(usize, usize), AsError> {
    let max = p.int("MaxRecords")?.unwrap_or(50);
    if !(1..=limit).contains(&max) {
        return Err(AsError::validation(format!(
            "1 validation error detected: Value '{max}' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to {limit}"
        )));
    }
    let start = match p.get("NextToken") {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| AsError::validation("The NextToken value is invalid."))?,
    };
    Ok((start, max as usize))
}

fn template_xml(t: &TemplateSpec) -> String {
    format!(
        "<LaunchTemplate><LaunchTemplateId>{}</LaunchTemplateId><LaunchTemplateName>{}</LaunchTemplateName><Version>{}</Version></LaunchTemplate>",
        esc(&t.id),
        esc(&t.name),
        esc(&t.version)
    )
}

fn group_xml(g: &Group) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<member><AutoScalingGroupName>{}</AutoScalingGroupName><AutoScalingGroupARN>{}</AutoScalingGroupARN>{}<MinSize>{}</MinSize><MaxSize>{}</MaxSize><DesiredCapacity>{}</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones>",
        esc(&g.name),
        esc(&g.arn),
        template_xml(&g.template),
        g.min,
        g.max,
        g.desired
    );
    for z in &g.zones {
        let _ = write!(s, "<member>{}</member>", esc(z));
    }
    s.push_str("</AvailabilityZones><LoadBalancerNames/><TargetGroupARNs/><HealthCheckType>EC2</HealthCheckType><HealthCheckGracePeriod>300</HealthCheckGracePeriod><Instances>");
    for i in &g.instances {
        let mut t = g.template.clone();
        t.version = i.template_version.clone();
        let _ = write!(
            s,
            "<member><InstanceId>{}</InstanceId><InstanceType>{}</InstanceType><AvailabilityZone>{}</AvailabilityZone><LifecycleState>{}</LifecycleState><HealthStatus>Healthy</HealthStatus>{}<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>",
            esc(&i.id),
            esc(&i.instance_type),
            esc(&i.zone),
            i.lifecycle.as_str(),
            template_xml(&t)
        );
    }
    let _ = write!(
        s,
        "</Instances><CreatedTime>{}</CreatedTime><SuspendedProcesses/><VPCZoneIdentifier>{}</VPCZoneIdentifier><EnabledMetrics/><Tags>",
        esc(&g.created),
        esc(&g.subnets.join(","))
    );
    for t in &g.tags {
        let _ = write!(
            s,
            "<member><ResourceId>{}</ResourceId><ResourceType>auto-scaling-group</ResourceType><Key>{}</Key><Value>{}</Value><PropagateAtLaunch>{}</PropagateAtLaunch></member>",
            esc(&g.name),
            esc(&t.key),
            esc(&t.value),
            t.propagate_at_launch
        );
    }
    s.push_str("</Tags><TerminationPolicies><member>Default</member></TerminationPolicies><NewInstancesProtectedFromScaleIn>false</NewInstancesProtectedFromScaleIn><CapacityRebalance>false</CapacityRebalance></member>");
    s
}

fn describe_groups(st: &AsHttp, p: &Params) -> Result<Response, AsError> {
    let names = p.members("AutoScalingGroupNames");
    let (start, max) = page(p, 100)?;
    let all: Vec<Group> = st
        .groups
        .all()
        .into_iter()
        .filter(|g| names.is_empty() || names.contains(&g.name))
        .collect();
    let mut body = String::from("<AutoScalingGroups>");
    for g in all.iter().skip(start).take(max) {
        body.push_str(&group_xml(g));
    }
    body.push_str("</AutoScalingGroups>");
    if start + max < all.len() {
        let _ = write!(body, "<NextToken>{}</NextToken>", start + max);
    }
    Ok(ok("DescribeAutoScalingGroups", &body))
}

fn describe_instances(st: &AsHttp, p: &Params) -> Result<Response, AsError> {
    let ids = p.members("InstanceIds");
    if ids.len() > 50 {
        return Err(AsError::validation(format!(
            "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50 (got {})",
            ids.len()
        )));
    }
    let (start, max) = page(p, 50)?;
    let all = st.groups.instances(&ids);
    let mut body = String::from("<AutoScalingInstances>");
    for (group, t, i) in all.iter().skip(start).take(max) {
        // This operation words health in capitals (API Reference,
        // AutoScalingInstanceDetails: "HEALTHY").
        let _ = write!(
            body,
            "<member><InstanceId>{}</InstanceId><InstanceType>{}</InstanceType><AutoScalingGroupName>{}</AutoScalingGroupName><AvailabilityZone>{}</AvailabilityZone><LifecycleState>{}</LifecycleState><HealthStatus>HEALTHY</HealthStatus>{}<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>",
            esc(&i.id),
            esc(&i.instance_type),
            esc(group),
            esc(&i.zone),
            i.lifecycle.as_str(),
            template_xml(t)
        );
    }
    body.push_str("</AutoScalingInstances>");
    if start + max < all.len() {
        let _ = write!(body, "<NextToken>{}</NextToken>", start + max);
    }
    Ok(ok("DescribeAutoScalingInstances", &body))
}

/// The launch template a request names, checked against EC2: the template
/// must exist, and a numbered version must be one of its versions.
async fn template_of(st: &AsHttp, p: &Params) -> Result<Option<TemplateSpec>, AsError> {
    let id = p.get("LaunchTemplate.LaunchTemplateId");
    let name = p.get("LaunchTemplate.LaunchTemplateName");
    if id.is_none() && name.is_none() {
        return Ok(None);
    }
    if id.is_some() == name.is_some() {
        return Err(AsError::validation(
            "Valid requests must contain either launchTemplateId or LaunchTemplateName",
        ));
    }
    let version = p.get("LaunchTemplate.Version").unwrap_or("$Default").to_string();
    let Some(c) = &st.ec2 else {
        return Ok(Some(TemplateSpec {
            id: id.unwrap_or_default().to_string(),
            name: name.unwrap_or_default().to_string(),
            version,
        }));
    };
    let out = c
        .describe_launch_template_versions()
        .set_launch_template_id(id.map(str::to_string))
        .set_launch_template_name(name.map(str::to_string))
        .versions(&version)
        .send()
        .await
        .map_err(|_| {
            AsError::validation(format!(
                "You must use a valid fully-formed launch template. The launch template {} version {version} does not exist",
                id.or(name).unwrap_or_default()
            ))
        })?;
    let v = out.launch_template_versions().first().ok_or_else(|| {
        AsError::validation(format!(
            "You must use a valid fully-formed launch template. The launch template {} version {version} does not exist",
            id.or(name).unwrap_or_default()
        ))
    })?;
    Ok(Some(TemplateSpec {
        id: v.launch_template_id().unwrap_or_default().to_string(),
        name: v.launch_template_name().unwrap_or_default().to_string(),
        version,
    }))
}

async fn update_group(st: &AsHttp, p: &Params) -> Result<Response, AsError> {
    let name = p.required("AutoScalingGroupName")?.to_string();
    if st.groups.get(&name).is_none() {
        return Err(AsError::validation(format!(
            "AutoScalingGroup name not found - AutoScalingGroup {name} not found"
        )));
    }
    let u = Update {
        template: template_of(st, p).await?,
        min: p.int("MinSize")?,
        max: p.int("MaxSize")?,
        desired: p.int("DesiredCapacity")?,
    };
    st.groups.update(&name, u)?;
    Ok(ok("UpdateAutoScalingGroup", ""))
}

fn terminate(st: &AsHttp, p: &Params) -> Result<Response, AsError> {
    let instance = p.required("InstanceId")?;
    let decrement = match p.required("ShouldDecrementDesiredCapacity")? {
        "true" => true,
        "false" => false,
        v => {
            return Err(AsError::validation(format!(
                "1 validation error detected: Value '{v}' at 'shouldDecrementDesiredCapacity' failed to satisfy constraint: Member must be a boolean"
            )));
        }
    };
    let a = st.groups.terminate(instance, decrement)?;
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let cause = if a.decrement {
        format!(
            "At {now} instance {} was taken out of service in response to a user request, shrinking the capacity from {} to {}.",
            a.instance,
            a.previous_desired,
            a.previous_desired.saturating_sub(1)
        )
    } else {
        format!(
            "At {now} instance {} was taken out of service in response to a user request.",
            a.instance
        )
    };
    let body = format!(
        "<Activity><ActivityId>{}</ActivityId><AutoScalingGroupName>{}</AutoScalingGroupName><Description>Terminating EC2 instance: {}</Description><Cause>{}</Cause><StartTime>{now}</StartTime><StatusCode>InProgress</StatusCode><Progress>0</Progress><Details>{}</Details></Activity>",
        a.id,
        esc(&a.group),
        esc(&a.instance),
        esc(&cause),
        esc(&format!("{{\"Availability Zone\":\"{}\"}}", a.zone))
    );
    Ok(ok("TerminateInstanceInAutoScalingGroup", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_in_order() {
        let p = Params(vec![
            ("InstanceIds.member.2".into(), "i-2".into()),
            ("InstanceIds.member.1".into(), "i-1".into()),
            ("Action".into(), "X".into()),
        ]);
        assert_eq!(p.members("InstanceIds"), vec!["i-1", "i-2"]);
        assert!(p.required("InstanceId").unwrap_err().message.contains("'instanceId'"));
    }
}
