//! Add-on configuration schemas as `DescribeAddonConfiguration` returns
//! them (JSON Schema draft-06 with `definitions` and `$ref`, every object
//! closed with `additionalProperties: false`), and a validator for the
//! subset of JSON Schema they use, reporting errors in the wording EKS
//! relays from its validator (`$.env.FOO: is not defined in the schema and
//! the schema does not allow additional properties`).

use serde_json::{Map, Value, json};

fn s() -> Value {
    json!({"type": "string"})
}
fn b() -> Value {
    json!({"type": "string", "format": "boolean"})
}
fn n() -> Value {
    json!({"type": "string", "format": "integer"})
}

/// The aws-node env variables the vpc-cni add-on accepts in `env`.
pub fn vpc_cni_env_properties() -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in [
        ("ADDITIONAL_ENI_TAGS", s()),
        ("ANNOTATE_POD_IP", b()),
        ("AWS_EC2_ENDPOINT", s()),
        ("AWS_EXTERNAL_SERVICE_CIDRS", s()),
        ("AWS_MANAGE_ENIS_NON_SCHEDULABLE", b()),
        ("AWS_VPC_CNI_NODE_PORT_SUPPORT", b()),
        ("AWS_VPC_ENI_MTU", n()),
        ("AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER", b()),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", b()),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", s()),
        ("AWS_VPC_K8S_CNI_EXTERNALSNAT", b()),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", s()),
        ("AWS_VPC_K8S_CNI_LOG_FILE", s()),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", s()),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", s()),
        ("AWS_VPC_K8S_PLUGIN_LOG_FILE", s()),
        ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", s()),
        ("CLUSTER_ENDPOINT", s()),
        ("DISABLE_INTROSPECTION", b()),
        ("DISABLE_LEAKED_ENI_CLEANUP", b()),
        ("DISABLE_METRICS", b()),
        ("DISABLE_NETWORK_RESOURCE_PROVISIONING", b()),
        ("DISABLE_POD_V6", b()),
        ("ENABLE_BANDWIDTH_PLUGIN", b()),
        ("ENABLE_IMDS_ONLY_MODE", b()),
        ("ENABLE_IPv4", b()),
        ("ENABLE_IPv6", b()),
        ("ENABLE_NFTABLES", b()),
        ("ENABLE_POD_ENI", b()),
        ("ENABLE_PREFIX_DELEGATION", b()),
        ("ENABLE_SUBNET_DISCOVERY", b()),
        ("ENABLE_V6_EGRESS", b()),
        ("ENI_CONFIG_ANNOTATION_DEF", s()),
        ("ENI_CONFIG_LABEL_DEF", s()),
        ("INTROSPECTION_BIND_ADDRESS", s()),
        ("IP_COOLDOWN_PERIOD", n()),
        ("MAX_ENI", n()),
        ("MINIMUM_IP_TARGET", n()),
        ("NETWORK_POLICY_ENFORCING_MODE", s()),
        ("POD_SECURITY_GROUP_ENFORCING_MODE", s()),
        ("WARM_ENI_TARGET", n()),
        ("WARM_IP_TARGET", n()),
        ("WARM_PREFIX_TARGET", n()),
    ] {
        m.insert(k.to_string(), v);
    }
    m
}

fn closed(title: &str, props: Value) -> Value {
    json!({"type": "object", "title": title, "additionalProperties": false, "properties": props})
}

/// The vpc-cni configuration schema.
pub fn vpc_cni() -> Value {
    let resources = closed(
        "Resources",
        json!({"limits": {"$ref": "#/definitions/Limits"}, "requests": {"$ref": "#/definitions/Requests"}}),
    );
    let quantity = json!({"type": "object", "additionalProperties": false,
        "properties": {"cpu": {"type": "string"}, "memory": {"type": "string"}}});
    json!({
        "$ref": "#/definitions/VpcCni",
        "$schema": "http://json-schema.org/draft-06/schema#",
        "definitions": {
            "Affinity": {"type": "object", "title": "Affinity", "additionalProperties": true},
            "EniConfig": closed("EniConfig", json!({
                "create": {"type": "boolean"},
                "region": {"type": "string"},
                "subnets": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": false,
                    "properties": {"id": {"type": "string"}, "securityGroups": {"type": "array", "items": {"type": "string"}}}
                }}
            })),
            "Env": {
                "type": "object", "title": "Env", "additionalProperties": false,
                "properties": Value::Object(vpc_cni_env_properties()),
            },
            "Init": closed("Init", json!({"env": {"$ref": "#/definitions/InitEnv"}})),
            "InitEnv": closed("InitEnv", json!({
                "DISABLE_TCP_EARLY_DEMUX": b(),
                "ENABLE_V6_EGRESS": b(),
            })),
            "Limits": {"title": "Limits", "type": "object", "additionalProperties": false,
                "properties": quantity["properties"].clone()},
            "NodeAgent": closed("NodeAgent", json!({
                "enableCloudWatchLogs": b(),
                "enablePolicyEventLogs": b(),
                "enabled": b(),
                "healthProbeBindAddr": n(),
                "metricsBindAddr": n(),
                "networkPolicyAgentLogFileLocation": s(),
                "resources": {"$ref": "#/definitions/Resources"},
                "securityContext": {"type": "object", "additionalProperties": true},
            })),
            "Requests": {"title": "Requests", "type": "object", "additionalProperties": false,
                "properties": quantity["properties"].clone()},
            "Resources": resources,
            "Tolerations": {"type": "array", "title": "Tolerations", "items": {"type": "object", "additionalProperties": true}},
            "VpcCni": closed("VpcCni", json!({
                "affinity": {"$ref": "#/definitions/Affinity"},
                "enableNetworkPolicy": b(),
                "enableWindowsIpam": b(),
                "enableWindowsPrefixDelegation": b(),
                "env": {"$ref": "#/definitions/Env"},
                "eniConfig": {"$ref": "#/definitions/EniConfig"},
                "init": {"$ref": "#/definitions/Init"},
                "livenessProbeTimeoutSeconds": {"type": "integer"},
                "nodeAgent": {"$ref": "#/definitions/NodeAgent"},
                "podAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "podLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                "readinessProbeTimeoutSeconds": {"type": "integer"},
                "resources": {"$ref": "#/definitions/Resources"},
                "tolerations": {"$ref": "#/definitions/Tolerations"},
                "updateStrategy": {"type": "object", "additionalProperties": true},
            })),
        },
        "description": "vpc-cni",
        "type": "object",
    })
}

pub fn coredns() -> Value {
    json!({
        "$ref": "#/definitions/Coredns",
        "$schema": "http://json-schema.org/draft-06/schema#",
        "definitions": {
            "Coredns": closed("Coredns", json!({
                "affinity": {"type": "object", "additionalProperties": true},
                "autoScaling": {"type": "object", "additionalProperties": true},
                "computeType": {"type": "string"},
                "corefile": {"type": "string"},
                "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
                "podAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "podDisruptionBudget": {"type": "object", "additionalProperties": true},
                "podLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                "replicaCount": {"type": "integer"},
                "resources": {"type": "object", "additionalProperties": true},
                "tolerations": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                "topologySpreadConstraints": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
            }))
        },
        "description": "coredns",
        "type": "object",
    })
}

pub fn kube_proxy() -> Value {
    json!({
        "$ref": "#/definitions/KubeProxy",
        "$schema": "http://json-schema.org/draft-06/schema#",
        "definitions": {
            "KubeProxy": closed("KubeProxy", json!({
                "ipvs": {"type": "object", "additionalProperties": true},
                "mode": {"type": "string", "enum": ["iptables", "ipvs", "nftables"]},
                "podAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "podLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                "resources": {"type": "object", "additionalProperties": true},
            }))
        },
        "description": "kube-proxy",
        "type": "object",
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut cur = schema;
    for _ in 0..16 {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix("#/").and_then(|p| root.pointer(&format!("/{p}"))) {
                Some(next) => cur = next,
                None => return cur,
            },
            None => return cur,
        }
    }
    cur
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let schema = resolve(root, schema);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let got = json_type(v);
        let ok = got == t || (t == "number" && got == "integer");
        if !ok {
            errs.push(format!("{path}: {got} found, {t} expected"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!(
            "{path}: does not have a value in the enumeration {}",
            Value::Array(e.clone())
        ));
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, val) in m {
                let child = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => check(root, ps, val, &child, errs),
                    None => match additional {
                        Some(Value::Bool(false)) => errs.push(format!(
                            "{child}: is not defined in the schema and the schema does not allow additional properties"
                        )),
                        Some(s @ Value::Object(_)) => check(root, s, val, &child, errs),
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(root, is, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

/// Validate `value` against `schema`; the errors in EKS's wording.
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    check(schema, schema, value, "$", &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Parse `configurationValues` as EKS does: JSON, or YAML.
pub fn parse_configuration(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(_) => serde_saphyr::from_str::<Value>(text)
            .map_err(|_| "ConfigurationValue is not in valid JSON or YAML format.".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_seed_and_custom_networking_values() {
        let s = vpc_cni();
        assert!(validate(&s, &json!({"env": {"WARM_IP_TARGET": "2", "MINIMUM_IP_TARGET": "4"}})).is_ok());
        assert!(
            validate(
                &s,
                &json!({"env": {
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "true",
            "ENI_CONFIG_LABEL_DEF": "topology.kubernetes.io/zone"}})
            )
            .is_ok()
        );
        assert!(
            validate(
                &s,
                &json!({"init": {"env": {"DISABLE_TCP_EARLY_DEMUX": "true"}},
            "nodeAgent": {"enablePolicyEventLogs": "true"},
            "resources": {"requests": {"cpu": "25m"}}, "tolerations": [{"operator": "Exists"}]})
            )
            .is_ok()
        );
    }

    #[test]
    fn rejects_unknown_keys_and_wrong_types() {
        let s = vpc_cni();
        let e = validate(&s, &json!({"env": {"WARM_IP_TARGETS": "2"}})).unwrap_err();
        assert_eq!(
            e,
            vec![
                "$.env.WARM_IP_TARGETS: is not defined in the schema and the schema does not allow additional properties"
            ]
        );
        let e = validate(&s, &json!({"env": {"WARM_IP_TARGET": 2}})).unwrap_err();
        assert_eq!(e, vec!["$.env.WARM_IP_TARGET: integer found, string expected"]);
        assert!(validate(&s, &json!({"bogus": {}})).is_err());
        assert!(validate(&s, &json!("just a string")).is_err());
        assert!(validate(&s, &json!({"resources": {"requests": {"gpu": "1"}}})).is_err());
    }

    #[test]
    fn parses_json_or_yaml() {
        assert_eq!(parse_configuration("{\"a\": 1}").unwrap(), json!({"a": 1}));
        assert_eq!(
            parse_configuration("env:\n  A: \"1\"\n").unwrap(),
            json!({"env": {"A": "1"}})
        );
        assert_eq!(parse_configuration("").unwrap(), json!({}));
        assert!(parse_configuration("{not json: [").is_err());
    }

    #[test]
    fn enums_are_checked() {
        let s = kube_proxy();
        assert!(validate(&s, &json!({"mode": "ipvs"})).is_ok());
        assert!(validate(&s, &json!({"mode": "userspace"})).is_err());
    }
}
