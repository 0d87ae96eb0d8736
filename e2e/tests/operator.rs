//! Runs against the cluster `KUBECONFIG` points at (kind on a workstation, see README.md);
//! prints "skipped: no cluster" and passes when it is not set.
//!
//! Proves: the CRDs in `crds/` are accepted by a real API server (structural schema, CEL
//! rules enforced), the Helm chart installs a working operator, a Cluster gets its objects
//! and a truthful status, Topics are created, grown, refused when shrunk and deleted, and
//! everything is cleaned up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::FutureExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sluice_operator::crd::{Cluster, Topic};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Polls `check` every second until it returns `Some`, for at most `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn run(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn ready_reason<K: serde::Serialize>(obj: &K) -> Option<(String, String)> {
    let v = serde_json::to_value(obj).ok()?;
    let c = v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

#[tokio::test]
async fn operator_end_to_end() {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipped: no cluster (set KUBECONFIG to run the e2e suite; see e2e/README.md)");
        eprintln!("skipped: no cluster (set KUBECONFIG to run the e2e suite; see e2e/README.md)");
        return;
    }
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG is set but no client could be built");
    let ns = format!("sluice-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create test namespace");
    let outcome = std::panic::AssertUnwindSafe(scenario(client.clone(), &ns))
        .catch_unwind()
        .await;
    teardown(client.clone(), &ns).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("e2e failed: {e:#}"),
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Deletes the test's resources while the operator still runs (so its finalizers
/// complete), strips finalizers that are left after a bounded wait, then removes the
/// operator and the namespace.
async fn teardown(client: Client, ns: &str) {
    let topics: Api<Topic> = Api::namespaced(client.clone(), ns);
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), ns);
    let _ = topics
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await;
    let _ = clusters
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await;
    let gone = wait_for(
        "test resources deleted",
        Duration::from_secs(90),
        || async {
            let t = topics.list(&Default::default()).await?.items.len();
            let c = clusters.list(&Default::default()).await?.items.len();
            Ok((t + c == 0).then_some(()))
        },
    )
    .await;
    if gone.is_err() {
        let strip = Patch::Merge(json!({"metadata": {"finalizers": null}}));
        for t in topics
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = topics
                .patch(&t.name_any(), &PatchParams::default(), &strip)
                .await;
        }
        for c in clusters
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = clusters
                .patch(&c.name_any(), &PatchParams::default(), &strip)
                .await;
        }
    }
    let _ = std::process::Command::new(env_or("HELM", "helm"))
        .args(["uninstall", "sluice", "--namespace", ns, "--wait"])
        .status();
    let namespaces: Api<Namespace> = Api::all(client);
    let _ = namespaces.delete(ns, &DeleteParams::default()).await;
}

async fn scenario(client: Client, ns: &str) -> anyhow::Result<()> {
    // 1. The CRDs, exactly as checked in, through a real API server.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in ["sluice.dev_clusters.yaml", "sluice.dev_topics.yaml"] {
        let text = std::fs::read_to_string(repo().join("crds").join(file))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("sluice-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("API server refused crds/{file}"))?;
        wait_for(
            &format!("CRD {name} Established"),
            Duration::from_secs(60),
            || async {
                let c = crds.get(&name).await?;
                Ok(c.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(()))
            },
        )
        .await?;
    }

    // 2. Schema validation is enforced by the API server.
    let topics: Api<Topic> = Api::namespaced(client.clone(), ns);
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), ns);
    let bad_topic: Topic = serde_json::from_value(
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "bad"}, "spec": {"clusterRef": "e2e", "partitions": 0, "config": {"cleanup.policy": "compacted"}}}),
    )?;
    let err = topics
        .create(&PostParams::default(), &bad_topic)
        .await
        .err()
        .context("invalid Topic accepted")?;
    let msg = err.to_string();
    anyhow::ensure!(
        msg.contains("cleanup.policy must be") && msg.contains("partitions"),
        "unexpected error: {msg}"
    );
    let bad_cluster: Cluster = serde_json::from_value(
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "bad"}, "spec": {"replicas": 0, "config": {"node.id": "3"}}}),
    )?;
    let err = clusters
        .create(&PostParams::default(), &bad_cluster)
        .await
        .err()
        .context("invalid Cluster accepted")?;
    anyhow::ensure!(
        err.to_string().contains("set by the operator"),
        "unexpected error: {err}"
    );

    // 3. The operator, installed with the Helm chart, watching only this namespace.
    let operator_image = env_or("SLUICE_E2E_OPERATOR_IMAGE", "sluice-operator:e2e");
    let (repo_part, tag) = operator_image
        .rsplit_once(':')
        .context("SLUICE_E2E_OPERATOR_IMAGE needs a tag")?;
    let broker_repo = env_or("SLUICE_E2E_BROKER_IMAGE_REPOSITORY", "sluice-broker");
    run(std::process::Command::new(env_or("HELM", "helm"))
        .args(["upgrade", "--install", "sluice"])
        .arg(repo().join("charts/sluice-operator"))
        .args([
            "--namespace",
            ns,
            "--skip-crds",
            "--wait",
            "--timeout",
            "180s",
        ])
        .args([
            "--set",
            &format!("image.repository={repo_part}"),
            "--set",
            &format!("image.tag={tag}"),
        ])
        .args(["--set", "image.pullPolicy=IfNotPresent"])
        // Cluster-scoped names of this release must not clash with an installed operator.
        .args(["--set", &format!("fullnameOverride=sluice-{ns}")])
        .args(["--set", &format!("brokerImage.repository={broker_repo}")])
        .args(["--set", &format!("watchNamespaces={{{ns}}}")])
        .args([
            "--set",
            &format!("rbac.rackClusterRoleName=sluice-broker-rack-{ns}"),
        ]))?;

    // 4. A one-broker Cluster gets its objects and turns Ready.
    let broker_tag = env_or("SLUICE_E2E_BROKER_TAG", "e2e");
    let cluster: Cluster = serde_json::from_value(
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "e2e"},
        "spec": {"replicas": 1, "version": broker_tag, "imagePullPolicy": "IfNotPresent", "storage": {"size": "1Gi"},
                 // Every node has this label (kind has no zones): exercises the rack
                 // binding, the projected token and the rack-init container.
                 "rack": {"topologyKey": "kubernetes.io/hostname"},
                 "config": {"num.partitions": "2"}}}),
    )?;
    clusters.create(&PostParams::default(), &cluster).await?;
    let ready = wait_for("Cluster e2e Ready", Duration::from_secs(300), || async {
        let c = clusters.get("e2e").await?;
        Ok((ready_reason(&c) == Some(("True".into(), "Ready".into()))).then_some(c))
    })
    .await?;
    let st = ready.status.clone().context("no status")?;
    anyhow::ensure!(
        st.ready_replicas == 1 && st.cluster_id.is_some(),
        "status: {st:?}"
    );
    anyhow::ensure!(
        st.bootstrap_servers.as_deref() == Some(&format!("e2e-bootstrap.{ns}.svc:9092")[..]),
        "status: {st:?}"
    );
    anyhow::ensure!(
        st.observed_generation == ready.metadata.generation,
        "status: {st:?}"
    );
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get("e2e-broker")
        .await?;
    anyhow::ensure!(
        sts.metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|o| o.kind == "Cluster")
    );
    Api::<Service>::namespaced(client.clone(), ns)
        .get("e2e-brokers")
        .await?;
    Api::<Service>::namespaced(client.clone(), ns)
        .get("e2e-bootstrap")
        .await?;
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("e2e-config")
        .await?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get("e2e-broker")
        .await?;

    // 5. Topics: create, grow, refuse a shrink, delete, re-create (new topic id).
    let topic = |partitions: i32| -> anyhow::Result<Topic> {
        Ok(serde_json::from_value(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
            "metadata": {"name": "orders"},
            "spec": {"clusterRef": "e2e", "topicName": "E2E.orders_v1", "partitions": partitions,
                     "config": {"retention.ms": "3600000"}}}),
        )?)
    };
    topics.create(&PostParams::default(), &topic(3)?).await?;
    let synced = |partitions: i32| {
        let topics = topics.clone();
        move || {
            let topics = topics.clone();
            async move {
                let t = topics.get("orders").await?;
                let s = t.status.clone().unwrap_or_default();
                Ok((ready_reason(&t) == Some(("True".into(), "Synced".into()))
                    && s.partitions == Some(partitions))
                .then_some(s))
            }
        }
    };
    let first = wait_for(
        "Topic orders synced with 3 partitions",
        Duration::from_secs(120),
        synced(3),
    )
    .await?;
    anyhow::ensure!(first.topic_name.as_deref() == Some("E2E.orders_v1"));
    anyhow::ensure!(
        first
            .config
            .unwrap_or_default()
            .get("retention.ms")
            .map(String::as_str)
            == Some("3600000")
    );
    let params = PatchParams::default();
    topics
        .patch(
            "orders",
            &params,
            &Patch::Merge(json!({"spec": {"partitions": 5}})),
        )
        .await?;
    wait_for(
        "Topic orders grown to 5 partitions",
        Duration::from_secs(120),
        synced(5),
    )
    .await?;
    topics
        .patch(
            "orders",
            &params,
            &Patch::Merge(json!({"spec": {"partitions": 2}})),
        )
        .await?;
    wait_for(
        "PartitionDecreaseRefused",
        Duration::from_secs(120),
        || async {
            let t = topics.get("orders").await?;
            Ok(
                (ready_reason(&t) == Some(("False".into(), "PartitionDecreaseRefused".into())))
                    .then_some(()),
            )
        },
    )
    .await?;
    let immutable = topics
        .patch(
            "orders",
            &params,
            &Patch::Merge(json!({"spec": {"clusterRef": "other"}})),
        )
        .await;
    match immutable {
        Err(kube::Error::Api(e))
            if e.code == 422 && e.message.contains("clusterRef is immutable") => {}
        other => bail!("clusterRef change: expected 422 'clusterRef is immutable', got {other:?}"),
    }
    topics.delete("orders", &DeleteParams::default()).await?;
    wait_for("Topic orders deleted", Duration::from_secs(120), || async {
        Ok(topics.get_opt("orders").await?.is_none().then_some(()))
    })
    .await?;
    topics.create(&PostParams::default(), &topic(3)?).await?;
    let second = wait_for(
        "Topic orders re-created",
        Duration::from_secs(120),
        synced(3),
    )
    .await?;
    anyhow::ensure!(
        second.topic_id != first.topic_id,
        "the Kafka topic was not deleted with its Topic"
    );

    // 6. Deleting the Cluster garbage-collects its objects.
    topics.delete("orders", &DeleteParams::default()).await?;
    wait_for("Topic orders deleted", Duration::from_secs(120), || async {
        Ok(topics.get_opt("orders").await?.is_none().then_some(()))
    })
    .await?;
    clusters.delete("e2e", &DeleteParams::foreground()).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    wait_for(
        "StatefulSet e2e-broker garbage-collected",
        Duration::from_secs(180),
        || async { Ok(sets.get_opt("e2e-broker").await?.is_none().then_some(())) },
    )
    .await?;
    Ok(())
}
