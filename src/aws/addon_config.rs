//! An EKS add-on's `configurationValues`, which EKS takes as JSON or YAML
//! ("The configuration values … must be in JSON or YAML format", UpdateAddon
//! in the EKS API Reference; the console and `--configuration-values
//! file://values.yaml` users write YAML). Parsed once into one value that
//! discovery, the steps, verify and rollback share; changed as an RFC 7396
//! merge patch (every key the patch does not name is kept); written back
//! in the format it came in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The text's format, kept so that what podnet writes reads like what the
/// user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the add-on's configuration values are neither JSON nor YAML ({0})")]
    Unreadable(String),
    #[error("the add-on's configuration values are not an object of keys")]
    NotAnObject,
    #[error("the add-on's configuration `env` is not an object of names and values")]
    EnvNotAnObject,
}

/// A parsed `configurationValues`.
#[derive(Debug, Clone, PartialEq)]
pub struct AddonConfig {
    /// Always an object (`{}` when there were no values).
    pub value: Value,
    pub format: Format,
}

impl AddonConfig {
    /// Parses as EKS does: JSON, else YAML; none or blank is `{}`.
    pub fn parse(text: Option<&str>) -> Result<AddonConfig, ConfigError> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(AddonConfig {
                value: Value::Object(Map::new()),
                format: Format::Json,
            });
        };
        let (value, format) = match serde_json::from_str::<Value>(text) {
            Ok(v) => (v, Format::Json),
            Err(json) => match serde_saphyr::from_str::<Value>(text) {
                Ok(v) => (v, Format::Yaml),
                Err(yaml) => return Err(ConfigError::Unreadable(format!("as JSON: {json}; as YAML: {yaml}"))),
            },
        };
        if !value.is_object() {
            return Err(ConfigError::NotAnObject);
        }
        if value.get("env").is_some_and(|e| !e.is_object()) {
            return Err(ConfigError::EnvNotAnObject);
        }
        Ok(AddonConfig { value, format })
    }

    /// The `env` keys with string values.
    pub fn env(&self) -> BTreeMap<String, String> {
        self.value["env"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This configuration with each `env` key set to its value, or removed
    /// (`None`), by an RFC 7396 merge patch: every other key stays. An `env`
    /// left empty by removals is dropped.
    pub fn with_env(&self, set: &BTreeMap<String, Option<String>>) -> AddonConfig {
        if set.is_empty() {
            return self.clone();
        }
        let env: Map<String, Value> = set
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        let mut value = self.value.clone();
        json_patch::merge(&mut value, &serde_json::json!({ "env": env }));
        if let Some(obj) = value.as_object_mut()
            && obj.get("env").and_then(Value::as_object).is_some_and(Map::is_empty)
        {
            obj.remove("env");
        }
        AddonConfig {
            value,
            format: self.format,
        }
    }

    /// The text to send, in the format it came in.
    pub fn render(&self) -> String {
        match self.format {
            Format::Json => self.value.to_string(),
            Format::Yaml => serde_saphyr::to_string(&self.value).unwrap_or_else(|_| self.value.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn yaml_is_read_changed_and_written_back_as_yaml_with_every_user_key() {
        let text = "env:\n  WARM_IP_TARGET: \"2\"\n  MINIMUM_IP_TARGET: \"4\"\ninit:\n  env:\n    DISABLE_TCP_EARLY_DEMUX: \"true\"\nresources:\n  requests:\n    cpu: 25m\n";
        let c = AddonConfig::parse(Some(text)).expect("YAML");
        assert_eq!(c.format, Format::Yaml);
        assert_eq!(c.env()["WARM_IP_TARGET"], "2");
        let on = c.with_env(&set(&[("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", Some("true"))]));
        let written = on.render();
        let back = AddonConfig::parse(Some(&written)).expect("what podnet writes reads back");
        assert_eq!(back.format, Format::Yaml, "{written}");
        assert_eq!(back.value, on.value, "{written}");
        // Strings that look like booleans or numbers stay strings.
        assert_eq!(back.env()["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "true", "{written}");
        assert_eq!(back.value["init"]["env"]["DISABLE_TCP_EARLY_DEMUX"], "true");
        assert_eq!(back.value["resources"]["requests"]["cpu"], "25m");
        // And off again: the configuration as it was.
        let off = back.with_env(&set(&[("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", None)]));
        assert_eq!(off.value, c.value);
    }

    #[test]
    fn json_stays_json_and_none_is_empty() {
        let c = AddonConfig::parse(Some(r#"{"env":{"WARM_IP_TARGET":"2"}}"#)).unwrap();
        assert_eq!(c.format, Format::Json);
        let on = c.with_env(&set(&[("ENI_CONFIG_LABEL_DEF", Some("topology.kubernetes.io/zone"))]));
        assert_eq!(
            on.render(),
            r#"{"env":{"ENI_CONFIG_LABEL_DEF":"topology.kubernetes.io/zone","WARM_IP_TARGET":"2"}}"#
        );
        let none = AddonConfig::parse(None).unwrap();
        assert_eq!(none.value, serde_json::json!({}));
        assert_eq!(AddonConfig::parse(Some("   ")).unwrap(), none);
        let off = none.with_env(&set(&[("A", Some("1"))])).with_env(&set(&[("A", None)]));
        assert_eq!(
            off.value,
            serde_json::json!({}),
            "an env emptied by removals is dropped"
        );
    }

    #[test]
    fn what_is_not_a_configuration_is_refused() {
        assert!(matches!(
            AddonConfig::parse(Some("[1, 2]")),
            Err(ConfigError::NotAnObject)
        ));
        assert!(matches!(
            AddonConfig::parse(Some(r#"{"env": 3}"#)),
            Err(ConfigError::EnvNotAnObject)
        ));
        assert!(matches!(
            AddonConfig::parse(Some("env: [unclosed")),
            Err(ConfigError::Unreadable(_))
        ));
    }
}
