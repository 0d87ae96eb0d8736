//! Pure functions from a `Cluster` spec to the Kubernetes objects that run it. The
//! controller only diffs and applies what these return (server-side apply).

pub mod configmap;
pub mod labels;
pub mod pdb;
pub mod rbac;
pub mod service;
pub mod statefulset;
pub mod validate;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;

use crate::crd::Cluster;

/// Operator-wide settings the builders need (from flags / the Helm chart).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker image repository; the tag is `spec.version` or the operator's version.
    pub broker_image_repository: String,
    /// Image of the operator itself, used for the rack init container.
    pub operator_image: String,
    /// ClusterRole (from the Helm chart) allowing brokers to read their node's labels.
    pub rack_cluster_role: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            broker_image_repository: "ghcr.io/sluice-dev/sluice-broker".into(),
            operator_image: format!(
                "ghcr.io/sluice-dev/sluice-operator:{}",
                env!("CARGO_PKG_VERSION")
            ),
            rack_cluster_role: "sluice-broker-rack".into(),
        }
    }
}

impl Settings {
    pub fn broker_image(&self, cluster: &Cluster) -> String {
        cluster.spec.image.clone().unwrap_or_else(|| {
            let tag = cluster
                .spec
                .version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
            format!("{}:{tag}", self.broker_image_repository)
        })
    }
}

/// Everything a Cluster consists of, in apply order.
#[derive(Debug, Clone)]
pub struct Desired {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub bootstrap_service: Service,
    pub stateful_set: StatefulSet,
    pub pdb: PodDisruptionBudget,
    /// Only with rack awareness: lets the broker's init container read its node.
    pub rack_binding: Option<ClusterRoleBinding>,
}

/// Builds every object of `cluster`, or says why the spec cannot be run.
pub fn desired(cluster: &Cluster, settings: &Settings) -> Result<Desired, validate::SpecError> {
    validate::validate(cluster)?;
    let config_map = configmap::config_map(cluster);
    let config_hash = configmap::config_hash(&config_map);
    Ok(Desired {
        service_account: rbac::service_account(cluster),
        headless_service: service::headless(cluster),
        bootstrap_service: service::bootstrap(cluster),
        stateful_set: statefulset::stateful_set(cluster, settings, &config_hash),
        pdb: pdb::pdb(cluster),
        rack_binding: cluster
            .spec
            .rack
            .as_ref()
            .map(|_| rbac::rack_binding(cluster, settings)),
        config_map,
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use kube::api::ObjectMeta;

    /// A Cluster as the API server would hand it over, defaults filled in.
    pub fn cluster(yaml_spec: &str) -> Cluster {
        let spec = serde_yaml::from_str(yaml_spec).unwrap();
        let mut c = Cluster::new("demo", spec);
        c.metadata = ObjectMeta {
            name: Some("demo".into()),
            namespace: Some("streaming".into()),
            uid: Some("2f1c6b0e-0000-4000-8000-000000000001".into()),
            generation: Some(1),
            ..Default::default()
        };
        c
    }
}
