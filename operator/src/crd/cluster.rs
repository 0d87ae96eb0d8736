//! `Cluster`: a set of Sluice brokers run as one StatefulSet.

// The `printcolumn(...)` entries repeat `type_`/`json_path`, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Settings the operator derives per broker; `spec.config` must not set them.
pub const RESERVED_CONFIGS: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "http.listener",
    "internal.listener",
    "broker.rack",
    "cluster.id",
    "controller.quorum.voters",
];

/// Port of the internal gRPC listener (admin API and metadata quorum).
pub const INTERNAL_PORT: i32 = 9093;
/// Port of the HTTP server (`/metrics`, `/healthz`, `/readyz`).
pub const HTTP_PORT: i32 = 9644;

/// A Sluice cluster: brokers, their storage, configuration and placement.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, kube(cel))]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "slc",
    category = "sluice",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapServers"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "A Sluice cluster: Kafka-compatible brokers run as a StatefulSet.",
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 45").message("Cluster names must be lower-case DNS labels of at most 45 characters (they prefix Service, StatefulSet and pod names)")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Number of brokers. Broker ids are the pod ordinals 0..replicas-1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Broker container image. Default: the operator's default broker image with tag
    /// `version` (or the operator's own version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Broker version, used as the image tag when `image` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub version: Option<String>,
    /// Image pull policy of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// CPU and memory of each broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent volume of each broker for the hot (local) log.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("storage is immutable: StatefulSet volume claim templates cannot change; resize PVCs by hand"))]
    pub storage: StorageSpec,
    /// Object storage for closed segments (tiered storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiered_storage: Option<TieredStorageSpec>,
    /// Kafka listeners, each advertised per broker through the headless Service.
    #[serde(default = "default_listeners")]
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(
        validation = kube::core::Rule::new("self.all(l, self.exists_one(m, m.name == l.name))").message("listener names must be unique"),
        validation = kube::core::Rule::new("self.all(l, self.exists_one(m, m.port == l.port))").message("listener ports must be unique"),
        validation = kube::core::Rule::new("self.all(l, l.port != 9093 && l.port != 9644)").message("ports 9093 (internal gRPC) and 9644 (HTTP) are reserved")
    )]
    pub listeners: Vec<ListenerSpec>,
    /// Broker settings by their Kafka names (`log.retention.ms`, `num.partitions`,
    /// `default.replication.factor`, ...). Values are strings.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 256))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, !(k in ['node.id', 'broker.id', 'listeners', 'advertised.listeners', 'log.dirs', 'log.dir', 'http.listener', 'internal.listener', 'broker.rack', 'cluster.id', 'controller.quorum.voters']))").message("node.id, listeners, advertised.listeners, log.dirs, http.listener, internal.listener, broker.rack, cluster.id and controller.quorum.voters are set by the operator"))]
    pub config: BTreeMap<String, String>,
    /// Rack awareness: each broker's `broker.rack` is its node's value of `topologyKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// Overrides of the broker pod template.
    #[serde(default)]
    pub template: PodTemplateOverrides,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// The brokers' own certificate (cert-manager style Secret: `tls.crt`, `tls.key`,
    /// `ca.crt`) for listeners with `tls: true` and for broker-to-broker replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BrokerTlsSpec>,
    /// CA that signs the client certificates of `User`s with `tls` authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_ca: Option<SecretRef>,
    /// Kafka ACL authorization; without it every authenticated client may do anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,
    /// How scale-up, scale-down and rolling restarts are carried out.
    #[serde(default)]
    pub operations: OperationsSpec,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerTlsSpec {
    /// Secret with `tls.crt`, `tls.key` and `ca.crt` whose names cover
    /// `*.{cluster}-brokers.{namespace}.svc` and `{cluster}-bootstrap.{namespace}.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret with `tls.crt` and `tls.key` (a cert-manager CA issuer's Secret works).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// Principals (`User:alice`) that bypass ACLs, besides the brokers themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub super_users: Vec<String>,
}

/// What happens to a removed broker's PersistentVolumeClaim after a scale-down.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum VolumePolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationsSpec {
    /// Rebalance partitions onto new brokers once they are ready.
    #[serde(default = "default_true")]
    pub rebalance_on_scale_up: bool,
    /// Bytes/s each follower may copy for moving replicas (rebalance and drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub throttle_bytes_per_second: Option<i64>,
    /// PVCs of brokers removed by a scale-down: kept (default) or deleted once the
    /// broker is drained, stopped and unregistered.
    #[serde(default)]
    pub removed_broker_volumes: VolumePolicy,
    /// A restarted broker that has passed its startup probe (log recovery done) but is
    /// not ready after this long stops the rolling restart (`Degraded`).
    #[serde(default = "default_ready_timeout")]
    #[schemars(range(min = 30))]
    pub broker_ready_timeout_seconds: i64,
}

fn default_ready_timeout() -> i64 {
    600
}

impl Default for OperationsSpec {
    fn default() -> Self {
        Self {
            rebalance_on_scale_up: true,
            throttle_bytes_per_second: None,
            removed_broker_volumes: VolumePolicy::Retain,
            broker_ready_timeout_seconds: default_ready_timeout(),
        }
    }
}

/// One until brokers form a multi-broker cluster (replication); the objects already
/// support more.
fn default_replicas() -> i32 {
    1
}

fn default_listeners() -> Vec<ListenerSpec> {
    vec![ListenerSpec::default()]
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each broker's volume.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".into())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TieredStorageSpec {
    /// Where closed segments go: `s3://bucket/prefix`, `gs://...`, `az://...` or
    /// `file:///path`.
    #[schemars(regex(pattern = r"^(s3|gs|az|file)://.+$"))]
    pub url: String,
    /// S3-compatible endpoint (MinIO, Ceph, R2), e.g. `http://minio.storage:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Secret holding the credentials, passed to brokers as `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecretRef>,
    /// Broker default of `local.retention.ms` (Kafka's `log.local.retention.ms`): how long
    /// uploaded segments stay on local disk. -2 means "as long as `retention.ms`".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -2))]
    pub local_retention_ms: Option<i64>,
    /// Broker default of `local.retention.bytes` (Kafka's `log.local.retention.bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -2))]
    pub local_retention_bytes: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Secret in the Cluster's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_access_key_key")]
    pub access_key_id_key: String,
    #[serde(default = "default_secret_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    /// Kafka listener name (`PLAINTEXT`, ...).
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,31}$"))]
    pub name: String,
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Encrypt with the certificate of `spec.tls`.
    #[serde(default)]
    pub tls: bool,
    /// How clients authenticate on this listener.
    #[serde(default)]
    pub authentication: ListenerAuthentication,
}

#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerAuthentication {
    /// Anonymous (`User:ANONYMOUS`).
    #[default]
    None,
    /// SASL SCRAM-SHA-512 (and SCRAM-SHA-256) with `User` credentials.
    ScramSha512,
    /// Mutual TLS: client certificates signed by `spec.clientsCa`; needs `tls: true`.
    Tls,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        Self {
            name: "PLAINTEXT".into(),
            port: 9092,
            tls: false,
            authentication: ListenerAuthentication::None,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value becomes the broker's rack.
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 317))]
    pub topology_key: String,
}

fn default_topology_key() -> String {
    "topology.kubernetes.io/zone".into()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra pod labels (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Replaces the default (brokers preferably on different nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Replaces the default (brokers spread over zones and nodes, best effort).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Seconds a broker gets to shut down cleanly (flush and checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10))]
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Annotate broker pods for Prometheus scraping (`prometheus.io/scrape`, port 9644).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

/// What the operator observed; its only output on the Cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Brokers asked for.
    #[serde(default)]
    pub replicas: i32,
    /// Brokers passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `bootstrap.servers` for clients inside the Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// Kafka cluster id, as the brokers report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Brokers registered in the cluster metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_brokers: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_partitions: Option<i32>,
    /// Brokers the StatefulSet runs now (differs from `replicas` while scaling down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_brokers: Option<i32>,
    /// The last rebalance the operator started, and how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceStatus>,
    /// The broker the operator restarted last and is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartStatus>,
    /// Cluster-wide dynamic broker configs the operator applied from `spec.config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dynamic_config: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    /// `ScaleUp` or `ScaleDown`.
    pub reason: String,
    /// The broker count the rebalance was for.
    pub brokers: i32,
    /// Brokers being emptied (scale-down).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<i32>,
    pub partitions_to_move: i32,
    pub partitions_moved: i32,
    pub bytes_to_move: i64,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartStatus {
    pub broker: i32,
    /// Uid of the pod that was deleted: a pod with another uid is the restarted broker.
    pub pod_uid: String,
    /// The StatefulSet revision the broker is restarted into.
    pub revision: String,
    /// RFC 3339.
    pub started_at: String,
}

impl Cluster {
    /// `{cluster}-broker`: the StatefulSet, its pods `{cluster}-broker-N` and the PDB.
    pub fn broker_name(&self) -> String {
        format!(
            "{}-broker",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// The headless Service giving each broker a stable DNS name.
    pub fn headless_service_name(&self) -> String {
        format!(
            "{}-brokers",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    pub fn bootstrap_service_name(&self) -> String {
        format!(
            "{}-bootstrap",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    pub fn config_map_name(&self) -> String {
        format!(
            "{}-config",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}
