//! The brokers' ServiceAccount and, with rack awareness, the binding that lets the init
//! container read the zone label of its node (nodes are cluster-scoped, so a Role cannot).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Settings;
use super::labels::{labels, owned_meta};
use crate::crd::Cluster;

/// Label on cluster-scoped objects naming the Cluster's namespace (they cannot carry an
/// owner reference to a namespaced object; the Cluster's finalizer deletes them).
pub const NAMESPACE_LABEL: &str = "sluice.dev/namespace";

pub fn service_account(cluster: &Cluster) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(cluster, cluster.broker_name()),
        // Brokers do not talk to the API server; only the rack init container does, and it
        // gets a projected token of its own.
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// `sluice-rack.{namespace}.{cluster}`: namespaces cannot contain dots, so no two
/// Clusters share a name.
pub fn rack_binding_name(cluster: &Cluster) -> String {
    format!(
        "sluice-rack.{}.{}",
        cluster.metadata.namespace.as_deref().unwrap_or_default(),
        cluster.metadata.name.as_deref().unwrap_or_default()
    )
}

pub fn rack_binding(cluster: &Cluster, settings: &Settings) -> ClusterRoleBinding {
    let mut l = labels(cluster);
    l.insert(
        NAMESPACE_LABEL.into(),
        cluster.metadata.namespace.clone().unwrap_or_default(),
    );
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(rack_binding_name(cluster)),
            labels: Some(l),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: settings.rack_cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: cluster.broker_name(),
            namespace: cluster.metadata.namespace.clone(),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::cluster;

    #[test]
    fn binding_names_the_broker_service_account() {
        let c = cluster("rack: {}");
        let b = rack_binding(&c, &Settings::default());
        assert_eq!(
            b.metadata.name.as_deref(),
            Some("sluice-rack.streaming.demo")
        );
        assert_eq!(b.role_ref.name, "sluice-broker-rack");
        let s = &b.subjects.unwrap()[0];
        assert_eq!(
            (s.name.as_str(), s.namespace.as_deref()),
            ("demo-broker", Some("streaming"))
        );
        assert!(b.metadata.owner_references.is_none());
        assert_eq!(
            service_account(&c).automount_service_account_token,
            Some(false)
        );
    }
}
