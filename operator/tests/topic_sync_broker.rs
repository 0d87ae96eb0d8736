//! The Topic reconciler's broker side (`topic_sync` over the admin gRPC API) against a real
//! `sluice-broker` process started here on 127.0.0.1 with ports it picks itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_api::admin::admin_client::AdminClient;
use sluice_api::admin::{AddPartitionsRequest, AlterTopicConfigRequest, GetBrokerStatusRequest};
use sluice_operator::admin::{AdminError, BrokerAdmin, GrpcAdmin};
use sluice_operator::topic_sync::{DesiredTopic, sync};

/// The broker binary from the same target directory (`cargo build -p sluice-broker`), or
/// `SLUICE_BROKER_BIN`.
fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("sluice-broker");
    assert!(
        bin.exists(),
        "{} not found: build the broker first (cargo build -p sluice-broker) or set SLUICE_BROKER_BIN",
        bin.display()
    );
    bin
}

struct Broker {
    child: Child,
    internal_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let ports = dir.path().join("ports.json");
    let child = Command::new(broker_bin())
        .args(["--listeners", "PLAINTEXT://127.0.0.1:0"])
        .args(["--http-listener", "127.0.0.1:0"])
        .args(["--internal-listener", "127.0.0.1:0"])
        .arg("--log-dirs")
        .arg(dir.path().join("data"))
        .arg("--ports-file")
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut broker = Broker {
        child,
        internal_port: 0,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&ports) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            broker.internal_port = v["internal"].as_u64().unwrap() as u16;
            return broker;
        }
        assert!(
            broker.child.try_wait().unwrap().is_none(),
            "broker exited during start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("broker did not write its ports file within 30s");
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn topic_lifecycle_against_a_real_broker() {
    let mut broker = start_broker();
    let endpoint = format!("http://127.0.0.1:{}", broker.internal_port);
    let admin = GrpcAdmin::new(&endpoint).unwrap();
    let mut raw = AdminClient::connect(endpoint.clone()).await.unwrap();

    // Kafka names may hold what Kubernetes names cannot.
    let mut want = DesiredTopic {
        name: "Payments.v1_EU".into(),
        partitions: 3,
        replication_factor: Some(1),
        config: map(&[("retention.ms", "86400000"), ("cleanup.policy", "delete")]),
    };
    let s = sync(&admin, &want).await.unwrap();
    assert!(s.created);
    assert_eq!(s.topic.partitions.len(), 3);
    assert_eq!(s.topic.configs, want.config);
    assert!(!s.topic.topic_id.is_empty());
    let id = s.topic.topic_id.clone();

    // In sync: nothing to do.
    let s = sync(&admin, &want).await.unwrap();
    assert!(!s.changed() && s.refusals.is_empty(), "{s:?}");

    // Drift made outside Kubernetes is corrected: a changed value and an extra override.
    raw.alter_topic_config(AlterTopicConfigRequest {
        name: want.name.clone(),
        set: map(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]),
        remove: vec![],
        validate_only: false,
    })
    .await
    .unwrap();
    let s = sync(&admin, &want).await.unwrap();
    assert_eq!(s.configs_set, map(&[("retention.ms", "86400000")]));
    assert_eq!(s.configs_removed, vec!["segment.bytes".to_string()]);
    assert_eq!(
        admin
            .describe_topic(&want.name)
            .await
            .unwrap()
            .unwrap()
            .configs,
        want.config
    );

    // Growing partitions works; a topic grown outside to more than the spec is refused.
    want.partitions = 6;
    let s = sync(&admin, &want).await.unwrap();
    assert_eq!(s.partitions_added, Some((3, 6)));
    raw.add_partitions(AddPartitionsRequest {
        name: want.name.clone(),
        partition_count: 8,
        validate_only: false,
    })
    .await
    .unwrap();
    let s = sync(&admin, &want).await.unwrap();
    assert_eq!(s.refusals.len(), 1);
    assert_eq!(s.refusals[0].reason, "PartitionDecreaseRefused");
    assert_eq!(s.topic.partitions.len(), 8);
    assert_eq!(s.topic.topic_id, id);
    want.partitions = 8;

    // A replication factor the broker cannot give is refused by the broker, not faked.
    let err = sync(
        &admin,
        &DesiredTopic {
            name: "three-replicas".into(),
            partitions: 1,
            replication_factor: Some(3),
            config: BTreeMap::new(),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AdminError::Rejected(m) if m.starts_with("INVALID_REPLICATION_FACTOR")),
        "{err}"
    );

    // Invalid settings come back with the Kafka error name.
    want.config.insert("retention.ms".into(), "soon".into());
    let err = sync(&admin, &want).await.unwrap_err();
    assert!(
        matches!(&err, AdminError::Rejected(m) if m.starts_with("INVALID_CONFIG")),
        "{err}"
    );
    want.config.insert("retention.ms".into(), "86400000".into());

    // Status for the Cluster reconciler.
    let cs = admin.cluster_status().await.unwrap();
    assert!(!cs.cluster_id.is_empty());
    assert_eq!(cs.brokers.len(), 1);
    assert_eq!(cs.topics, 1);
    assert_eq!(cs.partitions, 8);
    assert_eq!(cs.under_replicated_partitions, 0);
    let bs = raw
        .get_broker_status(GetBrokerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bs.broker_id, 0);
    assert!(bs.ready);
    assert_eq!((bs.partitions_hosted, bs.partitions_led), (8, 8));
    assert_eq!(bs.log_dirs.len(), 1);
    assert_eq!(bs.log_dirs[0].partitions, 8);

    // Deletion, twice: the second finds nothing (the finalizer still completes).
    assert!(admin.delete_topic(&want.name).await.unwrap());
    assert!(!admin.delete_topic(&want.name).await.unwrap());
    assert!(admin.describe_topic(&want.name).await.unwrap().is_none());

    // A dead broker is "unavailable", which the controller retries, not "rejected".
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    let err = admin.describe_topic("x").await.unwrap_err();
    assert!(matches!(err, AdminError::Unavailable { .. }), "{err:?}");
}
