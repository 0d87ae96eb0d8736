//! `Topic`: a Kafka topic of a `Cluster` in the same namespace.

// The `printcolumn(...)` entries repeat `type_`/`json_path`, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Kafka topic, created and kept in shape by the operator.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, kube(cel))]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "slt",
    category = "sluice",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef"),
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topicName"),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.partitions"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "A Kafka topic of a Sluice Cluster in the same namespace.",
    validation = kube::core::Rule::new("has(self.spec.topicName) || size(self.metadata.name) <= 249").message("metadata.name is longer than a Kafka topic name may be (249); set spec.topicName")
)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)").message("topicName is immutable: create a new Topic instead")
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Name of the `Cluster` (same namespace) the topic lives in.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("clusterRef is immutable"))]
    pub cluster_ref: String,
    /// Kafka topic name when it differs from `metadata.name` (Kafka names may contain `_`,
    /// `.` and upper case, Kubernetes names may not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    #[x_kube(validation = kube::core::Rule::new("self != '.' && self != '..'").message("'.' and '..' are not valid topic names"))]
    pub topic_name: Option<String>,
    /// Number of partitions. Can grow, never shrink (Kafka cannot remove partitions).
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// Replicas per partition; the cluster's `default.replication.factor` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: Option<i32>,
    /// Topic settings by their Kafka names (`retention.ms`, `cleanup.policy`,
    /// `remote.storage.enable`, ...). Values are strings. Settings not listed here are
    /// removed from the topic, so it falls back to the cluster defaults.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 256))]
    #[x_kube(validation = kube::core::Rule::new("!('cleanup.policy' in self) || self['cleanup.policy'] in ['delete', 'compact', 'compact,delete', 'delete,compact']").message("cleanup.policy must be delete, compact or compact,delete"))]
    pub config: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    1
}

/// What the topic looks like in the cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and its reason when it is not.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The Kafka topic name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Kafka's topic id; changes if the topic was deleted and re-created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Actual partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Actual replication factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Actual topic-level settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

impl Topic {
    /// The Kafka topic name: `spec.topicName`, else `metadata.name`.
    pub fn kafka_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
