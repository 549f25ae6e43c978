//! AWS errors, classified once: every SDK failure becomes an [`AwsError`]
//! naming the IAM action (`ec2:AssociateVpcCidrBlock`), the resource, the
//! error code and an [`ErrorClass`] that decides retries and advice. The
//! classification reads `code()` and the HTTP status, as the AWS SDK
//! examples do, never the message text.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error_class::ErrorClass;

/// One failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service}:{operation}{} failed: {}{message}", on(.resource), code.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub class: ErrorClass,
    /// `ec2` or `eks` (the IAM service prefix).
    pub service: &'static str,
    pub operation: &'static str,
    pub resource: Option<String>,
    pub code: Option<String>,
    pub message: String,
    pub status: Option<u16>,
}

fn on(resource: &Option<String>) -> String {
    resource.as_ref().map(|r| format!(" on {r}")).unwrap_or_default()
}

impl AwsError {
    /// The IAM action this call needs.
    pub fn iam_action(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }

    /// The principal a denial names: AWS writes "User: ARN is not
    /// authorized to perform: …" in EC2's and EKS's access-denied messages.
    pub fn principal(&self) -> Option<String> {
        let rest = self.message.split("User: ").nth(1)?;
        let arn = rest.split_whitespace().next()?;
        arn.starts_with("arn:").then(|| arn.to_string())
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// What the user should do about it, by class. Never the next podnet
    /// command: only the caller knows whether anything was saved to resume.
    pub fn fix(&self) -> String {
        match self.class {
            ErrorClass::Permission => format!(
                "{} may not {}: grant it — `podnet iam-policy --for apply` (or `--for rollback`) prints the least-privilege policy podnet needs, ready for `aws iam create-policy`{}",
                self.principal().unwrap_or_else(|| {
                    "the AWS identity podnet runs as (`aws sts get-caller-identity` names it)".into()
                }),
                self.iam_action(),
                if self.message.contains("Encoded authorization failure message") {
                    "; `aws sts decode-authorization-message --encoded-message …` shows the resource and condition keys EC2 evaluated"
                } else {
                    ""
                }
            ),
            ErrorClass::Throttled => "AWS throttled the requests even after retries; wait a minute".to_string(),
            ErrorClass::Transient => "a network or AWS-side error; it is safe to try again".to_string(),
            ErrorClass::NotFound => "the resource is gone or never existed; check the plan file's names".to_string(),
            ErrorClass::Conflict => {
                "the resource is in a state that forbids the change right now; check it in the console or CLI"
                    .to_string()
            }
            ErrorClass::Blocked => {
                "an AWS quota or limit stops the change; raise it in Service Quotas or free capacity".to_string()
            }
            _ => "fix the cause named above".to_string(),
        }
    }
}

/// Classifies an AWS error code and HTTP status.
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    if let Some(code) = code {
        match code {
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
            | "BandwidthLimitExceeded" => return ErrorClass::Throttled,
            "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "Unavailable"
            | "ServerException"
            | "InternalServerError"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "InsufficientInstanceCapacity" => return ErrorClass::Transient,
            "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "SignatureDoesNotMatch"
            | "OptInRequired"
            | "Blocked"
            | "NotAuthorizedException" => {
                return ErrorClass::Permission;
            }
            "ResourceNotFoundException" | "NotFoundException" => return ErrorClass::NotFound,
            "ResourceInUseException"
            | "IncorrectState"
            | "IncorrectInstanceState"
            | "DependencyViolation"
            | "InvalidSubnet.Conflict"
            | "Resource.AlreadyAssociated"
            | "InvalidVpcState"
            | "ConcurrentModificationException"
            | "ConflictException"
            | "IdempotentParameterMismatch" => {
                return ErrorClass::Conflict;
            }
            "CidrLimitExceeded"
            | "VpcLimitExceeded"
            | "SubnetLimitExceeded"
            | "RulesPerSecurityGroupLimitExceeded"
            | "SecurityGroupLimitExceeded"
            | "RouteTableLimitExceeded"
            | "LimitExceededException"
            | "ResourceLimitExceeded"
            | "ServiceQuotaExceededException"
            | "AddressLimitExceeded" => {
                return ErrorClass::Blocked;
            }
            c if c.ends_with(".NotFound") => return ErrorClass::NotFound,
            c if c.starts_with("Invalid")
                || c.starts_with("Missing")
                || c.ends_with("ValidationException")
                || c == "ValidationError"
                || c == "CidrConflict"
                || c == "UnsupportedOperation" =>
            {
                return ErrorClass::Invalid;
            }
            _ => {}
        }
    }
    match status {
        Some(429) => ErrorClass::Throttled,
        Some(s) if s >= 500 => ErrorClass::Transient,
        Some(401 | 403) => ErrorClass::Permission,
        Some(404) => ErrorClass::NotFound,
        Some(409) => ErrorClass::Conflict,
        Some(400) => ErrorClass::Invalid,
        _ => ErrorClass::Failed,
    }
}

/// Converts any SDK error (EC2 or EKS: they share the smithy runtime) into
/// an [`AwsError`].
pub fn from_sdk<E>(
    service: &'static str,
    operation: &'static str,
    resource: Option<String>,
    err: SdkError<E, HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (class, code, message, status) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().map(str::to_string);
            let message = ctx
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}", DisplayErrorContext(&err)));
            (classify(code.as_deref(), Some(status)), code, message, Some(status))
        }
        SdkError::TimeoutError(_) => (ErrorClass::Transient, None, "the request timed out".to_string(), None),
        SdkError::DispatchFailure(d) => {
            let what = if d.is_io() {
                "could not reach the endpoint (connection failed)"
            } else if d.is_timeout() {
                "the connection timed out"
            } else {
                "the request could not be sent"
            };
            (
                ErrorClass::Transient,
                None,
                format!("{what}: {}", DisplayErrorContext(&err)),
                None,
            )
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            (
                classify(None, Some(status)),
                None,
                format!("unreadable response (HTTP {status})"),
                Some(status),
            )
        }
        SdkError::ConstructionFailure(_) => (
            ErrorClass::Invalid,
            None,
            format!("the request could not be built: {}", DisplayErrorContext(&err)),
            None,
        ),
        _ => (ErrorClass::Failed, None, format!("{}", DisplayErrorContext(&err)), None),
    };
    AwsError {
        class,
        service,
        operation,
        resource,
        code,
        message,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_code_and_status() {
        let cases = [
            (Some("RequestLimitExceeded"), Some(503), ErrorClass::Throttled),
            (Some("Throttling"), Some(400), ErrorClass::Throttled),
            (Some("UnauthorizedOperation"), Some(403), ErrorClass::Permission),
            (Some("AccessDeniedException"), Some(403), ErrorClass::Permission),
            (Some("InvalidVpcID.NotFound"), Some(400), ErrorClass::NotFound),
            (Some("InvalidGroup.NotFound"), Some(400), ErrorClass::NotFound),
            (Some("ResourceNotFoundException"), Some(404), ErrorClass::NotFound),
            (Some("InvalidSubnet.Conflict"), Some(400), ErrorClass::Conflict),
            (Some("ResourceInUseException"), Some(409), ErrorClass::Conflict),
            (Some("CidrLimitExceeded"), Some(400), ErrorClass::Blocked),
            (Some("InvalidParameterValue"), Some(400), ErrorClass::Invalid),
            (Some("InvalidParameterException"), Some(400), ErrorClass::Invalid),
            (Some("InvalidVpcID.Malformed"), Some(400), ErrorClass::Invalid),
            (Some("InternalError"), Some(500), ErrorClass::Transient),
            (Some("SomethingNew"), Some(502), ErrorClass::Transient),
            (None, Some(429), ErrorClass::Throttled),
            (None, Some(404), ErrorClass::NotFound),
            (None, None, ErrorClass::Failed),
        ];
        for (code, status, want) in cases {
            assert_eq!(classify(code, status), want, "{code:?} {status:?}");
        }
    }

    #[test]
    fn permission_errors_name_the_iam_action() {
        let e = AwsError {
            class: ErrorClass::Permission,
            service: "ec2",
            operation: "AssociateVpcCidrBlock",
            resource: Some("vpc-0abc".into()),
            code: Some("UnauthorizedOperation".into()),
            message: "You are not authorized to perform this operation.".into(),
            status: Some(403),
        };
        assert_eq!(
            e.to_string(),
            "ec2:AssociateVpcCidrBlock on vpc-0abc failed: UnauthorizedOperation: You are not authorized to perform this operation."
        );
        assert!(e.fix().contains("may not ec2:AssociateVpcCidrBlock"), "{}", e.fix());
        assert!(e.fix().contains("podnet iam-policy --for apply"), "{}", e.fix());
        assert!(
            !e.fix().contains("podnet resume"),
            "the adapter does not know what to run next"
        );
        // EKS and today's EC2 name the principal in the message.
        let eks = AwsError {
            service: "eks",
            operation: "UpdateAddon",
            code: Some("AccessDeniedException".into()),
            message: "User: arn:aws:sts::123456789012:assumed-role/ops/alice is not authorized to perform: eks:UpdateAddon on resource: arn:aws:eks:r:1:addon/demo/vpc-cni/x".into(),
            ..e
        };
        assert!(
            eks.fix()
                .starts_with("arn:aws:sts::123456789012:assumed-role/ops/alice may not eks:UpdateAddon"),
            "{}",
            eks.fix()
        );
    }
}
