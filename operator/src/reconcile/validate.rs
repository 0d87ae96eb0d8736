//! Checks the schema cannot express. A failure becomes a `Degraded` condition with the
//! reason and message below, never a crash loop.

use crate::crd::Cluster;
use crate::crd::cluster::RESERVED_CONFIGS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct SpecError {
    /// CamelCase reason for the condition.
    pub reason: &'static str,
    pub message: String,
}

fn invalid(message: String) -> SpecError {
    SpecError {
        reason: "InvalidSpec",
        message,
    }
}

/// Security protocols this broker version can serve.
const SUPPORTED_LISTENERS: &[&str] = &["PLAINTEXT"];

pub fn validate(cluster: &Cluster) -> Result<(), SpecError> {
    let spec = &cluster.spec;
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let label_ok = !name.is_empty()
        && name.len() <= 45
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !label_ok {
        return Err(invalid(format!(
            "Cluster name '{name}' must be a lower-case DNS label of at most 45 characters (it prefixes Service, StatefulSet and pod names)"
        )));
    }
    if spec.replicas < 1 {
        return Err(invalid(format!(
            "spec.replicas is {}, at least 1 broker is needed",
            spec.replicas
        )));
    }
    if spec.listeners.is_empty() {
        return Err(invalid(
            "spec.listeners must name at least one listener".into(),
        ));
    }
    let mut port_names =
        std::collections::BTreeSet::from(["internal".to_string(), "http".to_string()]);
    for l in &spec.listeners {
        if !port_names.insert(crate::reconcile::service::port_name(&l.name)) {
            return Err(invalid(format!(
                "listener {}: its port name '{}' clashes with another port; pick a more distinct name",
                l.name,
                crate::reconcile::service::port_name(&l.name)
            )));
        }
        if !SUPPORTED_LISTENERS.contains(&l.name.as_str()) {
            return Err(invalid(format!(
                "listener {}: only {} listeners are supported by this Sluice version",
                l.name,
                SUPPORTED_LISTENERS.join(", ")
            )));
        }
    }
    for (k, v) in &spec.config {
        if RESERVED_CONFIGS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "spec.config.{k} is set by the operator and cannot be overridden"
            )));
        }
        let key_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !key_ok {
            return Err(invalid(format!(
                "spec.config key '{k}' is not a Kafka setting name (letters, digits, '.', '_', '-')"
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(invalid(format!(
                "spec.config.{k} contains a control character (newline?)"
            )));
        }
    }
    if let Some(t) = &spec.tiered_storage {
        let scheme_ok = ["s3://", "gs://", "az://", "file://"]
            .iter()
            .any(|s| t.url.starts_with(s) && t.url.len() > s.len());
        if !scheme_ok {
            return Err(invalid(format!(
                "spec.tieredStorage.url '{}' must start with s3://, gs://, az:// or file://",
                t.url
            )));
        }
        for v in [
            &t.url,
            t.endpoint.as_ref().unwrap_or(&String::new()),
            t.region.as_ref().unwrap_or(&String::new()),
        ] {
            if v.chars().any(char::is_control) {
                return Err(invalid(
                    "spec.tieredStorage contains a control character".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::cluster;

    #[test]
    fn accepts_defaults_and_rejects_what_the_broker_cannot_run() {
        assert!(validate(&cluster("{}")).is_ok());
        let e = validate(&cluster("listeners: [{name: SASL_SSL, port: 9094}]")).unwrap_err();
        assert_eq!(e.reason, "InvalidSpec");
        assert!(e.message.contains("SASL_SSL"), "{e}");
        let e = validate(&cluster("config: {listeners: 'PLAINTEXT://:1'}")).unwrap_err();
        assert!(e.message.contains("spec.config.listeners"), "{e}");
        let e = validate(&cluster("config: {log.retention.ms: \"1\\nnode.id=5\"}")).unwrap_err();
        assert!(e.message.contains("control character"), "{e}");
        let e = validate(&cluster("config: {'a b': x}")).unwrap_err();
        assert!(e.message.contains("not a Kafka setting name"), "{e}");
        let e = validate(&cluster("replicas: 0")).unwrap_err();
        assert!(e.message.contains("spec.replicas"), "{e}");
        let mut long = cluster("{}");
        long.metadata.name = Some("a".repeat(46));
        assert!(validate(&long).unwrap_err().message.contains("at most 45"));
        long.metadata.name = Some("my.cluster".into());
        assert!(validate(&long).is_err());
        let e = validate(&cluster("tieredStorage: {url: 'http://x'}")).unwrap_err();
        assert!(e.message.contains("tieredStorage.url"), "{e}");
    }
}
