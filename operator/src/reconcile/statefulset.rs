//! The brokers' StatefulSet: one pod per broker id, a volume each, probes on the broker's
//! HTTP server, per-pod advertised listeners, spread over nodes and zones.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, SeccompProfile, SecretKeySelector,
    SecurityContext, ServiceAccountTokenProjection, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeProjection, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Settings;
use super::configmap::{self, DATA_DIR, MOUNT_DIR};
use super::labels::{labels, owned_meta, selector};
use super::service::port_name;
use crate::crd::Cluster;
use crate::crd::cluster::{HTTP_PORT, INTERNAL_PORT};

pub const CONFIG_HASH_ANNOTATION: &str = "sluice.dev/config-hash";
/// Kubernetes (1.28+) labels StatefulSet pods with their ordinal; it becomes `node.id`.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const RACK_DIR: &str = "/var/run/sluice";
pub const RACK_FILE: &str = "/var/run/sluice/rack.properties";
const BROKER_UID: i64 = 65532;

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Each broker advertises its own stable DNS name; Kubernetes expands `$(POD_NAME)`.
pub fn advertised_listeners(cluster: &Cluster) -> String {
    cluster
        .spec
        .listeners
        .iter()
        .map(|l| {
            format!(
                "{}://$(POD_NAME).{}.$(POD_NAMESPACE).svc:{}",
                l.name,
                cluster.headless_service_name(),
                l.port
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn broker_env(cluster: &Cluster) -> Vec<EnvVar> {
    let mut e = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env(
            "SLUICE_NODE_ID",
            &format!("metadata.labels['{POD_INDEX_LABEL}']"),
        ),
        env("SLUICE_ADVERTISED_LISTENERS", advertised_listeners(cluster)),
        env("SLUICE_LOG_FORMAT", "json".into()),
    ];
    if let Some(creds) = cluster
        .spec
        .tiered_storage
        .as_ref()
        .and_then(|t| t.credentials_secret.as_ref())
    {
        e.push(secret_env(
            "AWS_ACCESS_KEY_ID",
            &creds.name,
            &creds.access_key_id_key,
        ));
        e.push(secret_env(
            "AWS_SECRET_ACCESS_KEY",
            &creds.name,
            &creds.secret_access_key_key,
        ));
    }
    e
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn broker_container(cluster: &Cluster, settings: &Settings) -> Container {
    let mut args = vec![
        "--config".to_string(),
        format!("{MOUNT_DIR}/{}", configmap::FILE),
    ];
    let mut mounts = vec![
        mount("data", DATA_DIR, false),
        mount("config", MOUNT_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    if cluster.spec.rack.is_some() {
        args.extend(["--config".to_string(), RACK_FILE.to_string()]);
        mounts.push(mount("rack", RACK_DIR, true));
    }
    let mut ports: Vec<ContainerPort> = cluster
        .spec
        .listeners
        .iter()
        .map(|l| ContainerPort {
            name: Some(port_name(&l.name)),
            container_port: l.port,
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    for (name, port) in [("internal", INTERNAL_PORT), ("http", HTTP_PORT)] {
        ports.push(ContainerPort {
            name: Some(name.into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    Container {
        name: "broker".into(),
        image: Some(settings.broker_image(cluster)),
        image_pull_policy: cluster.spec.image_pull_policy.map(|p| p.as_str().into()),
        args: Some(args),
        env: Some(broker_env(cluster)),
        ports: Some(ports),
        resources: cluster.spec.resources.clone(),
        volume_mounts: Some(mounts),
        // Log recovery after an unclean stop can take a while: liveness starts only after
        // the startup probe passed (up to 30 minutes).
        startup_probe: Some(http_probe("/healthz", 10, 180)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        security_context: Some(restricted_container_security()),
        ..Default::default()
    }
}

/// Writes `broker.rack=<zone>` for the broker to read as a second config file.
fn rack_init_container(cluster: &Cluster, settings: &Settings, topology_key: &str) -> Container {
    Container {
        name: "rack".into(),
        image: Some(settings.operator_image.clone()),
        args: Some(vec![
            "rack-init".into(),
            "--node".into(),
            "$(NODE_NAME)".into(),
            "--topology-key".into(),
            topology_key.into(),
            "--output".into(),
            RACK_FILE.into(),
        ]),
        env: Some(vec![field_env("NODE_NAME", "spec.nodeName")]),
        volume_mounts: Some(vec![
            mount("rack", RACK_DIR, false),
            mount(
                "kube-api-access",
                "/var/run/secrets/kubernetes.io/serviceaccount",
                true,
            ),
        ]),
        security_context: Some(restricted_container_security()),
        resources: cluster.spec.resources.as_ref().map(|_| Default::default()),
        ..Default::default()
    }
}

/// The token volume Kubernetes would automount, given only to the rack init container.
fn api_access_volume() -> Volume {
    Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3607),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// Default placement: brokers preferably on different nodes.
fn default_affinity(cluster: &Cluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector(cluster)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Default spread: evenly over zones (the rack key when rack awareness is on), best
/// effort so a single-zone cluster still schedules.
fn default_spread(cluster: &Cluster) -> Vec<TopologySpreadConstraint> {
    let key = cluster
        .spec
        .rack
        .as_ref()
        .map_or("topology.kubernetes.io/zone".to_string(), |r| {
            r.topology_key.clone()
        });
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key,
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector(cluster)),
            ..Default::default()
        }),
        ..Default::default()
    }]
}

fn pod_annotations(cluster: &Cluster, config_hash: &str) -> BTreeMap<String, String> {
    let mut a = cluster.spec.template.annotations.clone();
    if cluster.spec.metrics.enabled {
        a.insert("prometheus.io/scrape".into(), "true".into());
        a.insert("prometheus.io/port".into(), HTTP_PORT.to_string());
        a.insert("prometheus.io/path".into(), "/metrics".into());
    }
    a.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());
    a
}

pub fn stateful_set(cluster: &Cluster, settings: &Settings, config_hash: &str) -> StatefulSet {
    let spec = &cluster.spec;
    let t = &spec.template;
    let mut pod_labels = t.labels.clone();
    pod_labels.extend(labels(cluster));
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cluster.config_map_name(),
                ..Default::default()
            }),
            ..Default::default()
        },
        empty_dir("tmp"),
    ];
    let mut init_containers = Vec::new();
    if let Some(rack) = &spec.rack {
        volumes.push(empty_dir("rack"));
        volumes.push(api_access_volume());
        init_containers.push(rack_init_container(cluster, settings, &rack.topology_key));
    }
    let pod = PodSpec {
        service_account_name: Some(cluster.broker_name()),
        automount_service_account_token: Some(false),
        init_containers: (!init_containers.is_empty()).then_some(init_containers),
        containers: vec![broker_container(cluster, settings)],
        volumes: Some(volumes),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(BROKER_UID),
            run_as_group: Some(BROKER_UID),
            fs_group: Some(BROKER_UID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        termination_grace_period_seconds: Some(t.termination_grace_period_seconds.unwrap_or(120)),
        affinity: Some(
            t.affinity
                .clone()
                .unwrap_or_else(|| default_affinity(cluster)),
        ),
        topology_spread_constraints: Some(if t.topology_spread_constraints.is_empty() {
            default_spread(cluster)
        } else {
            t.topology_spread_constraints.clone()
        }),
        tolerations: (!t.tolerations.is_empty()).then(|| t.tolerations.clone()),
        node_selector: (!t.node_selector.is_empty()).then(|| t.node_selector.clone()),
        priority_class_name: t.priority_class_name.clone(),
        image_pull_secrets: (!t.image_pull_secrets.is_empty())
            .then(|| t.image_pull_secrets.clone()),
        ..Default::default()
    };
    let mut storage_request = BTreeMap::new();
    storage_request.insert("storage".to_string(), spec.storage.size.clone());
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(selector(cluster)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(storage_request),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: owned_meta(cluster, cluster.broker_name()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(cluster.headless_service_name()),
            // Brokers start together: a later metadata quorum needs its voters at once.
            pod_management_policy: Some("Parallel".into()),
            // The operator restarts brokers itself, one at a time and only when that
            // keeps every partition at min.insync.replicas (`day2::roll`).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            // Data outlives the Cluster unless someone deletes the PVCs: losing a log by
            // deleting a custom resource would be worse than a leftover volume.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(selector(cluster)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations(cluster, config_hash)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::cluster;

    fn pod(s: &StatefulSet) -> &PodSpec {
        s.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    /// The downward-API field an env var is taken from.
    fn field_path(e: &EnvVar) -> &str {
        &e.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path
    }

    fn env_of<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .unwrap()
    }

    #[test]
    fn defaults() {
        let c = cluster("{}");
        let s = stateful_set(&c, &Settings::default(), "abc");
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("demo-broker"));
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("demo-brokers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let p = pod(&s);
        let b = &p.containers[0];
        assert_eq!(
            b.image.as_deref(),
            Some(
                format!(
                    "ghcr.io/sluice-dev/sluice-broker:{}",
                    env!("CARGO_PKG_VERSION")
                )
                .as_str()
            )
        );
        assert_eq!(
            b.args.as_ref().unwrap(),
            &vec![
                "--config".to_string(),
                "/etc/sluice/server.properties".into()
            ]
        );
        assert_eq!(
            env_of(b, "SLUICE_ADVERTISED_LISTENERS").value.as_deref(),
            Some("PLAINTEXT://$(POD_NAME).demo-brokers.$(POD_NAMESPACE).svc:9092")
        );
        assert_eq!(
            field_path(env_of(b, "SLUICE_NODE_ID")),
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        let ready = b
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        let live = b
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        assert!(p.init_containers.is_none());
        let sc = b.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            p.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        // Default placement: anti-affinity on hostname, spread over zones.
        let anti = p
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .unwrap()[0]
                .pod_affinity_term
                .topology_key,
            "kubernetes.io/hostname"
        );
        let spread = &p.topology_spread_constraints.as_ref().unwrap()[0];
        assert_eq!(spread.topology_key, "topology.kubernetes.io/zone");
        assert_eq!(spread.when_unsatisfiable, "ScheduleAnyway");
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "abc");
        assert_eq!(annotations["prometheus.io/port"], "9644");
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let req = claim
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(req["storage"].0, "10Gi");
        assert!(claim.spec.as_ref().unwrap().storage_class_name.is_none());
        assert_eq!(
            s.metadata.owner_references.as_ref().unwrap()[0].controller,
            Some(true)
        );
    }

    #[test]
    fn overrides_storage_credentials_and_image() {
        let c = cluster(
            r#"
replicas: 1
version: 0.9.1
imagePullPolicy: Always
resources: {requests: {cpu: "2", memory: 4Gi}, limits: {memory: 4Gi}}
storage: {size: 500Gi, storageClassName: fast-ssd}
listeners: [{name: PLAINTEXT, port: 19092}]
tieredStorage:
  url: s3://bucket/sluice
  credentialsSecret: {name: s3-creds}
metrics: {enabled: false}
template:
  annotations: {team: payments}
  labels: {cost-center: "42", sluice.dev/cluster: hijack}
  tolerations: [{key: dedicated, operator: Equal, value: kafka, effect: NoSchedule}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [kafka]}]}]
  nodeSelector: {disk: ssd}
  priorityClassName: streaming-critical
  terminationGracePeriodSeconds: 300
"#,
        );
        let s = stateful_set(&c, &Settings::default(), "h");
        let spec = s.spec.as_ref().unwrap();
        let p = pod(&s);
        let b = &p.containers[0];
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            b.image.as_deref(),
            Some("ghcr.io/sluice-dev/sluice-broker:0.9.1")
        );
        assert_eq!(b.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            b.resources.as_ref().unwrap().requests.as_ref().unwrap()["memory"].0,
            "4Gi"
        );
        assert_eq!(
            env_of(b, "SLUICE_ADVERTISED_LISTENERS").value.as_deref(),
            Some("PLAINTEXT://$(POD_NAME).demo-brokers.$(POD_NAMESPACE).svc:19092")
        );
        let key = env_of(b, "AWS_SECRET_ACCESS_KEY")
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (key.name.as_str(), key.key.as_str()),
            ("s3-creds", "AWS_SECRET_ACCESS_KEY")
        );
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let cs = claim.spec.as_ref().unwrap();
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(
            cs.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "500Gi"
        );
        let meta = spec.template.metadata.as_ref().unwrap();
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations["team"], "payments");
        assert!(!annotations.contains_key("prometheus.io/scrape"));
        let pod_labels = meta.labels.as_ref().unwrap();
        assert_eq!(pod_labels["cost-center"], "42");
        // The operator's selector labels cannot be overridden.
        assert_eq!(pod_labels["sluice.dev/cluster"], "demo");
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].value.as_deref(),
            Some("kafka")
        );
        assert!(p.affinity.as_ref().unwrap().node_affinity.is_some());
        assert!(p.affinity.as_ref().unwrap().pod_anti_affinity.is_none());
        assert_eq!(p.node_selector.as_ref().unwrap()["disk"], "ssd");
        assert_eq!(p.priority_class_name.as_deref(), Some("streaming-critical"));
        assert_eq!(p.termination_grace_period_seconds, Some(300));
        let explicit = cluster("image: registry.local/sluice:dev");
        assert_eq!(
            pod(&stateful_set(&explicit, &Settings::default(), "h")).containers[0]
                .image
                .as_deref(),
            Some("registry.local/sluice:dev")
        );
    }

    #[test]
    fn rack_awareness_adds_the_init_container_and_second_config_file() {
        let c = cluster("rack: {topologyKey: example.com/rack}");
        let settings = Settings {
            operator_image: "registry.local/sluice-operator:1".into(),
            ..Default::default()
        };
        let s = stateful_set(&c, &settings, "h");
        let p = pod(&s);
        let init = &p.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            init.image.as_deref(),
            Some("registry.local/sluice-operator:1")
        );
        let args = init.args.as_ref().unwrap();
        assert_eq!(args[0], "rack-init");
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--topology-key" && w[1] == "example.com/rack")
        );
        assert_eq!(field_path(env_of(init, "NODE_NAME")), "spec.nodeName");
        let broker_args = p.containers[0].args.as_ref().unwrap();
        assert_eq!(broker_args.last().map(String::as_str), Some(RACK_FILE));
        // Only the init container gets an API token.
        assert_eq!(p.automount_service_account_token, Some(false));
        assert!(
            init.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "kube-api-access")
        );
        assert!(
            !p.containers[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "kube-api-access")
        );
        assert_eq!(
            p.topology_spread_constraints.as_ref().unwrap()[0].topology_key,
            "example.com/rack"
        );
    }
}
