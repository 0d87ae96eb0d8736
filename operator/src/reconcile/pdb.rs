//! PodDisruptionBudget: voluntary disruptions (node drains) take one broker at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{owned_meta, selector};
use crate::crd::Cluster;

pub fn pdb(cluster: &Cluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(cluster, cluster.broker_name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(cluster)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::cluster;

    #[test]
    fn one_broker_at_a_time() {
        let p = pdb(&cluster("replicas: 5"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["sluice.dev/cluster"],
            "demo"
        );
        assert_eq!(p.metadata.name.as_deref(), Some("demo-broker"));
    }
}
