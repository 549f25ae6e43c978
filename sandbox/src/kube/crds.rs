//! The CustomResourceDefinitions of the custom kinds the sandbox serves, as
//! the VPC CNI and Karpenter install them (names, scope, printer columns,
//! a schema of the fields podnet touches), with status Established. A custom
//! resource is served only while its CRD exists (see `store.rs`).

use serde_json::{Value, json};

use super::resources::{self, EC2NODECLASS, ENICONFIG, NODECLAIM, NODEPOOL};

fn crd(rt_idx: usize, version_extra: Value, schema: Value, list_kind: &str) -> Value {
    let rt = resources::get(rt_idx);
    let mut version = json!({
        "name": rt.version,
        "served": true,
        "storage": true,
        "schema": {"openAPIV3Schema": schema},
    });
    if let (Some(v), Some(extra)) = (version.as_object_mut(), version_extra.as_object()) {
        for (k, x) in extra {
            v.insert(k.clone(), x.clone());
        }
    }
    let mut names = json!({
        "plural": rt.plural,
        "singular": rt.singular,
        "kind": rt.kind,
        "listKind": list_kind,
    });
    if !rt.short_names.is_empty() {
        names["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        names["categories"] = json!(rt.categories);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": rt.crd_name()},
        "spec": {
            "group": rt.group,
            "names": names,
            "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [version],
        },
        "status": {
            "acceptedNames": names,
            "storedVersions": [rt.version],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": "2024-11-04T02:11:39Z"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": "2024-11-04T02:11:39Z"}
            ]
        }
    })
}

fn object_schema(spec: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }
    })
}

fn preserve(description: &str) -> Value {
    json!({"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": true})
}

fn col(name: &str, path: &str, ty: &str, priority: u32) -> Value {
    let mut c = json!({"name": name, "jsonPath": path, "type": ty});
    if priority > 0 {
        c["priority"] = json!(priority);
    }
    c
}

/// `eniconfigs.crd.k8s.amazonaws.com`, as the aws-vpc-cni chart ships it.
pub fn eniconfig() -> Value {
    let mut schema = object_schema(json!({
        "type": "object",
        "description": "ENIConfigSpec defines the desired state of ENIConfig",
        "properties": {
            "securityGroups": {"type": "array", "items": {"type": "string"}},
            "subnet": {"type": "string"},
        },
        "required": ["subnet"],
    }));
    schema["x-kubernetes-preserve-unknown-fields"] = json!(true);
    schema["description"] = json!("ENIConfig is the Schema for the eniconfigs API");
    crd(ENICONFIG, json!({}), schema, "ENIConfigList")
}

pub fn nodepool() -> Value {
    crd(
        NODEPOOL,
        json!({
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                col("NodeClass", ".spec.template.spec.nodeClassRef.name", "string", 0),
                col("Nodes", ".status.resources.nodes", "string", 0),
                col("Ready", r#".status.conditions[?(@.type=="Ready")].status"#, "string", 0),
                col("Age", ".metadata.creationTimestamp", "date", 0),
                col("Weight", ".spec.weight", "integer", 1),
                col("CPU", ".status.resources.cpu", "string", 1),
                col("Memory", ".status.resources.memory", "string", 1),
            ]
        }),
        object_schema(preserve("NodePoolSpec is the top level nodepool specification.")),
        "NodePoolList",
    )
}

pub fn nodeclaim() -> Value {
    crd(
        NODECLAIM,
        json!({
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                col("Type", r".metadata.labels.node\.kubernetes\.io/instance-type", "string", 0),
                col("Capacity", r".metadata.labels.karpenter\.sh/capacity-type", "string", 0),
                col("Zone", r".metadata.labels.topology\.kubernetes\.io/zone", "string", 0),
                col("Node", ".status.nodeName", "string", 0),
                col("Ready", r#".status.conditions[?(@.type=="Ready")].status"#, "string", 0),
                col("Age", ".metadata.creationTimestamp", "date", 0),
                col("ID", ".status.providerID", "string", 1),
                col("NodePool", r".metadata.labels.karpenter\.sh/nodepool", "string", 1),
                col("NodeClass", ".spec.nodeClassRef.name", "string", 1),
                col("Drifted", r#".status.conditions[?(@.type=="Drifted")].status"#, "string", 1),
            ]
        }),
        object_schema(preserve("NodeClaimSpec describes the desired state of the NodeClaim")),
        "NodeClaimList",
    )
}

pub fn ec2nodeclass() -> Value {
    crd(
        EC2NODECLASS,
        json!({
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                col("Ready", r#".status.conditions[?(@.type=="Ready")].status"#, "string", 0),
                col("Age", ".metadata.creationTimestamp", "date", 0),
                col("Role", ".spec.role", "string", 1),
            ]
        }),
        object_schema(preserve(
            "EC2NodeClassSpec is the top level specification for the AWS Karpenter Provider.",
        )),
        "EC2NodeClassList",
    )
}

/// The CRD of a custom resource type, by index.
pub fn for_type(rt: usize) -> Option<Value> {
    match rt {
        ENICONFIG => Some(eniconfig()),
        NODEPOOL => Some(nodepool()),
        NODECLAIM => Some(nodeclaim()),
        EC2NODECLASS => Some(ec2nodeclass()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_roundtrip_through_k8s_openapi() {
        for rt in [ENICONFIG, NODEPOOL, NODECLAIM, EC2NODECLASS] {
            let v = for_type(rt).unwrap();
            let f = resources::get(resources::CRD).validate.unwrap();
            let back = f(v.clone()).expect("CRD parses as k8s-openapi type");
            assert_eq!(back["metadata"]["name"], v["metadata"]["name"]);
        }
    }
}
