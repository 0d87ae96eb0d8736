//! `sluice-operator rack-init`: the broker pods' init container. Reads the zone label of
//! the node the pod landed on and writes `broker.rack=<zone>` for the broker.

use std::path::Path;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

/// `broker.rack=...` line for a label value (escaped for a properties file).
pub fn rack_properties(value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            c => vec![c],
        })
        .collect();
    format!("broker.rack={escaped}\n")
}

pub async fn run(node: &str, topology_key: &str, output: &Path) -> anyhow::Result<()> {
    if node.is_empty() {
        bail!("--node is empty: set it from the downward API (spec.nodeName)");
    }
    let client = Client::try_default()
        .await
        .context("cannot create a Kubernetes client (is the service account token mounted?)")?;
    let nodes: Api<Node> = Api::all(client);
    let n = nodes
        .get(node)
        .await
        .with_context(|| format!("cannot read node {node}; the broker's ServiceAccount needs get on nodes (ClusterRoleBinding sluice-rack.*)"))?;
    let value = n
        .metadata
        .labels
        .unwrap_or_default()
        .get(topology_key)
        .cloned()
        .with_context(|| format!("node {node} has no label {topology_key}; set spec.rack.topologyKey to a label your nodes carry"))?;
    if value.chars().any(char::is_control) {
        bail!("label {topology_key} of node {node} contains control characters");
    }
    std::fs::write(output, rack_properties(&value))
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "node {node}: {topology_key}={value}, wrote {}",
        output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn properties_line() {
        assert_eq!(
            super::rack_properties("eu-west-1a"),
            "broker.rack=eu-west-1a\n"
        );
        assert_eq!(super::rack_properties("a\\b"), "broker.rack=a\\\\b\n");
    }
}
