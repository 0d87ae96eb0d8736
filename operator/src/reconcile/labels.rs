//! Labels and owner references shared by every object of a Cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::Cluster;

pub const MANAGER: &str = "sluice-operator";
pub const CLUSTER_LABEL: &str = "sluice.dev/cluster";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Labels that select the broker pods of one cluster. Never change these: StatefulSet
/// selectors are immutable.
pub fn selector(cluster: &Cluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_LABEL.into(), name(cluster)),
        (COMPONENT_LABEL.into(), "broker".into()),
    ])
}

/// Selector labels plus the recommended `app.kubernetes.io` ones.
pub fn labels(cluster: &Cluster) -> BTreeMap<String, String> {
    let mut l = selector(cluster);
    l.insert("app.kubernetes.io/name".into(), "sluice".into());
    l.insert("app.kubernetes.io/instance".into(), name(cluster));
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l
}

pub fn name(cluster: &Cluster) -> String {
    cluster.metadata.name.clone().unwrap_or_default()
}

pub fn owner_reference(cluster: &Cluster) -> Option<OwnerReference> {
    cluster.controller_owner_ref(&())
}

/// Metadata of a namespaced object owned by the cluster.
pub fn owned_meta(cluster: &Cluster, object_name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(labels(cluster)),
        owner_references: owner_reference(cluster).map(|o| vec![o]),
        ..Default::default()
    }
}
