//! The headless Service (stable per-broker DNS names, the advertised addresses) and the
//! bootstrap Service (one address for clients' `bootstrap.servers`).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{owned_meta, selector};
use crate::crd::Cluster;
use crate::crd::cluster::{HTTP_PORT, INTERNAL_PORT};

/// Port name for a Kafka listener: lower case, at most 15 characters (IANA service names).
pub fn port_name(listener: &str) -> String {
    let mut n: String = listener
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .take(15)
        .collect();
    while n.ends_with('-') {
        n.pop();
    }
    n
}

fn port(name: String, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.clone()),
        port,
        target_port: Some(IntOrString::String(name)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn kafka_ports(cluster: &Cluster) -> Vec<ServicePort> {
    cluster
        .spec
        .listeners
        .iter()
        .map(|l| port(port_name(&l.name), l.port))
        .collect()
}

pub fn headless(cluster: &Cluster) -> Service {
    let mut ports = kafka_ports(cluster);
    ports.push(port("internal".into(), INTERNAL_PORT));
    ports.push(port("http".into(), HTTP_PORT));
    Service {
        metadata: owned_meta(cluster, cluster.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Brokers must find each other (and the operator them) before they are ready.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector(cluster)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn bootstrap(cluster: &Cluster) -> Service {
    Service {
        metadata: owned_meta(cluster, cluster.bootstrap_service_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(cluster)),
            ports: Some(kafka_ports(cluster)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `bootstrap.servers` for in-cluster clients, first listener.
pub fn bootstrap_servers(cluster: &Cluster) -> String {
    let port = cluster.spec.listeners.first().map_or(9092, |l| l.port);
    format!(
        "{}.{}.svc:{port}",
        cluster.bootstrap_service_name(),
        cluster.metadata.namespace.as_deref().unwrap_or("default")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::cluster;

    #[test]
    fn headless_and_bootstrap() {
        let c = cluster("replicas: 3");
        let h = headless(&c);
        let spec = h.spec.unwrap();
        assert_eq!(h.metadata.name.as_deref(), Some("demo-brokers"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<(String, i32)> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("plaintext".into(), 9092),
                ("internal".into(), 9093),
                ("http".into(), 9644)
            ]
        );
        let b = bootstrap(&c);
        assert_eq!(b.metadata.name.as_deref(), Some("demo-bootstrap"));
        assert_eq!(b.spec.unwrap().ports.unwrap().len(), 1);
        assert_eq!(bootstrap_servers(&c), "demo-bootstrap.streaming.svc:9092");
    }

    #[test]
    fn port_names_are_valid_service_names() {
        assert_eq!(port_name("PLAINTEXT"), "plaintext");
        assert_eq!(port_name("REPLICATION_INTERNAL_X"), "replication-int");
        assert_eq!(port_name("ABCDEFGHIJKLMN_X"), "abcdefghijklmn");
    }
}
