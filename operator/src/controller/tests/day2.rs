//! Day-2 steps of the Cluster controller against the mock API service. A small world
//! answers whatever the reconcile asks (StatefulSet, pods, volumes, applies, deletes,
//! events) and records it, so each test checks what was done rather than the order of
//! every read.

use sluice_api::admin::{BrokerDescription, QuorumStatus};

use super::*;

/// What the API server holds for one reconcile.
struct World {
    sts_replicas: i32,
    update_revision: &'static str,
    /// (ordinal, revision, ready, uid)
    pods: Vec<(i32, &'static str, bool, String)>,
    claims: Vec<i32>,
}

/// What the reconcile did.
#[derive(Default, Debug)]
struct Seen {
    sts_replicas: Option<i64>,
    deleted: Vec<(String, Value)>,
    events: Vec<String>,
    status: Value,
}

impl World {
    fn sts(&self) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "demo-broker", "namespace": "streaming", "generation": 1},
            "spec": {"replicas": self.sts_replicas, "serviceName": "demo-brokers",
                     "selector": {}, "template": {}},
            "status": {"replicas": self.sts_replicas, "readyReplicas": self.pods.iter().filter(|p| p.2).count(),
                       "observedGeneration": 1, "updateRevision": self.update_revision}
        })
    }

    fn pods(&self) -> Value {
        let items: Vec<Value> = self
            .pods
            .iter()
            .map(|(i, rev, ready, uid)| {
                json!({
                    "metadata": {"name": format!("demo-broker-{i}"), "uid": uid,
                                 "labels": {"apps.kubernetes.io/pod-index": i.to_string(), "controller-revision-hash": rev}},
                    "status": {
                        "conditions": [{"type": "Ready", "status": if *ready { "True" } else { "False" }}],
                        "containerStatuses": [{"name": "broker", "ready": ready, "restartCount": 0,
                                               "image": "x", "imageID": "", "started": true,
                                               "state": {"running": {}}}]
                    }
                })
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
    }

    fn claims(&self) -> Value {
        let items: Vec<Value> = self
            .claims
            .iter()
            .map(|i| json!({"metadata": {"name": format!("data-demo-broker-{i}"), "uid": format!("pvc-{i}")}}))
            .collect();
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": items})
    }

    /// Serves one reconcile until its status write.
    async fn serve(&self, api: &mut ApiServer) -> Seen {
        let mut seen = Seen::default();
        for _ in 0..40 {
            let (req, send) = tokio::time::timeout(Duration::from_secs(5), api.0.next_request())
                .await
                .expect("reconcile stalled")
                .expect("client gone");
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, answer) = if path.ends_with("/statefulsets/demo-broker")
                && method == Method::GET
            {
                (200, self.sts())
            } else if path.ends_with("/statefulsets/demo-broker") {
                seen.sts_replicas = body["spec"]["replicas"].as_i64();
                let mut s = self.sts();
                s["spec"]["replicas"] = body["spec"]["replicas"].clone();
                (200, s)
            } else if path.ends_with("/pods") {
                (200, self.pods())
            } else if path.ends_with("/persistentvolumeclaims") {
                (200, self.claims())
            } else if path.contains("/persistentvolumeclaims/") && method == Method::GET {
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                let ord = name.rsplit('-').next().unwrap_or_default().to_string();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "metadata": {"name": name, "uid": format!("pvc-{ord}")}}),
                )
            } else if path.contains("/clusterrolebindings/") {
                (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "none"}),
                )
            } else if method == Method::DELETE {
                seen.deleted.push((path.clone(), body.clone()));
                (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                )
            } else if path.contains("/events") {
                seen.events
                    .push(body["reason"].as_str().unwrap_or_default().to_string());
                (
                    200,
                    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x"}, "eventTime": null}),
                )
            } else if path.ends_with("/clusters/demo/status") {
                seen.status = body;
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(
                            serde_json::to_vec(
                                &serde_json::to_value(test_cluster(json!({}), true)).unwrap(),
                            )
                            .unwrap(),
                        ))
                        .unwrap(),
                );
                return seen;
            } else if method == Method::PATCH {
                (200, body.clone())
            } else {
                panic!("unexpected request {method} {path}");
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
        panic!("the reconcile never wrote its status");
    }
}

fn ready_pods(n: i32, rev: &'static str) -> Vec<(i32, &'static str, bool, String)> {
    (0..n).map(|i| (i, rev, true, format!("pod-{i}"))).collect()
}

/// Broker status: (id, replicas) with voters and the largest replication factor.
fn status(brokers: &[(i32, i32)], voters: &[i32], max_rf: i32) -> ClusterStatus {
    ClusterStatus {
        cluster_id: "c".into(),
        controller_id: voters[0],
        brokers: brokers
            .iter()
            .map(|(id, replicas)| BrokerDescription {
                broker_id: *id,
                replicas: *replicas,
                ..Default::default()
            })
            .collect(),
        quorum: Some(QuorumStatus {
            leader_id: voters[0],
            voters: voters.to_vec(),
            ..Default::default()
        }),
        max_replication_factor: max_rf,
        max_replication_factor_topic: "orders".into(),
        ..Default::default()
    }
}

async fn reconcile(
    ctx: &Arc<Context>,
    api: &mut ApiServer,
    world: &World,
    cluster: Cluster,
) -> (Seen, Action) {
    let task = tokio::spawn(cluster::reconcile(Arc::new(cluster), ctx.clone()));
    let seen = world.serve(api).await;
    let action = task.await.unwrap().unwrap();
    (seen, action)
}

fn with_status(mut c: Cluster, status: &Value) -> Cluster {
    c.status = serde_json::from_value(status["status"].clone()).unwrap();
    c
}

#[tokio::test]
async fn scale_down_moves_voters_then_drains_then_stops_the_drained_broker() {
    let (ctx, mut api, admin) = setup();
    let spec = json!({"replicas": 2});
    let mut world = World {
        sts_replicas: 3,
        update_revision: "r1",
        pods: ready_pods(3, "r1"),
        claims: vec![0, 1, 2],
    };
    *admin.status.lock() = Some(status(&[(0, 4), (1, 4), (2, 4)], &[0, 1, 2], 2));

    // 1. Broker 2 is a voter: the quorum changes first; the StatefulSet keeps 3.
    let (seen, action) = reconcile(&ctx, &mut api, &world, test_cluster(spec.clone(), true)).await;
    assert_eq!(seen.sts_replicas, Some(3));
    assert!(admin.calls.lock().contains(&"voters [0, 1]".to_string()));
    assert!(seen.events.contains(&"QuorumVotersChanged".to_string()));
    assert_eq!(
        condition(&seen.status, "Progressing")["reason"],
        "ScalingDown"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));

    // 2. Voters moved: drain broker 2 (exclude it from a rebalance).
    *admin.status.lock() = Some(status(&[(0, 4), (1, 4), (2, 4)], &[0, 1], 2));
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert_eq!(seen.sts_replicas, Some(3));
    assert!(
        admin
            .calls
            .lock()
            .contains(&"rebalance exclude=[2]".to_string())
    );
    assert_eq!(seen.status["status"]["rebalance"]["reason"], "ScaleDown");
    assert_eq!(seen.status["status"]["rebalance"]["draining"], json!([2]));

    // 3. Moves in progress: wait; Rebalancing says so.
    let mut moving = status(&[(0, 4), (1, 4), (2, 4)], &[0, 1], 2);
    moving.reassigning_partitions = 3;
    *admin.status.lock() = Some(moving);
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let calls_before = admin.calls.lock().len();
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert_eq!(seen.sts_replicas, Some(3));
    assert_eq!(condition(&seen.status, "Rebalancing")["status"], "True");
    assert_eq!(&admin.calls.lock()[calls_before..], ["cluster_status"]);

    // 4. Drained: the StatefulSet shrinks to 2; broker 2's volume is kept (Retain).
    *admin.status.lock() = Some(status(&[(0, 6), (1, 6), (2, 0)], &[0, 1], 2));
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert_eq!(seen.sts_replicas, Some(2));
    assert_eq!(condition(&seen.status, "Rebalancing")["status"], "False");
    assert!(seen.deleted.is_empty());

    // 5. Pod gone, broker fenced: unregistered. Nothing deleted under Retain.
    world.sts_replicas = 2;
    world.pods.pop();
    let mut st = status(&[(0, 6), (1, 6), (2, 0)], &[0, 1], 2);
    st.brokers[2].fenced = true;
    *admin.status.lock() = Some(st);
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert!(admin.calls.lock().contains(&"unregister 2".to_string()));
    assert!(seen.events.contains(&"BrokerRemoved".to_string()));
    assert!(seen.deleted.is_empty(), "{:?}", seen.deleted);

    // 6. With removedBrokerVolumes: Delete the volume goes, conditional on its uid.
    *admin.status.lock() = Some(status(&[(0, 6), (1, 6)], &[0, 1], 2));
    let spec = json!({"replicas": 2, "operations": {"removedBrokerVolumes": "Delete"}});
    let c = with_status(test_cluster(spec, true), &seen.status);
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    let (path, body) = &seen.deleted[0];
    assert!(
        path.ends_with("/persistentvolumeclaims/data-demo-broker-2"),
        "{path}"
    );
    assert_eq!(body["preconditions"]["uid"], "pvc-2");
    api.done().await;
}

#[tokio::test]
async fn scale_down_below_the_replication_factor_is_refused() {
    let (ctx, mut api, admin) = setup();
    let world = World {
        sts_replicas: 3,
        update_revision: "r1",
        pods: ready_pods(3, "r1"),
        claims: vec![],
    };
    *admin.status.lock() = Some(status(&[(0, 4), (1, 4), (2, 4)], &[0, 1, 2], 3));
    let (seen, _) = reconcile(
        &ctx,
        &mut api,
        &world,
        test_cluster(json!({"replicas": 2}), true),
    )
    .await;
    assert_eq!(seen.sts_replicas, Some(3));
    let degraded = condition(&seen.status, "Degraded");
    assert_eq!(degraded["reason"], "ScaleDownRefused");
    assert!(degraded["message"].as_str().unwrap().contains("orders"));
    assert!(seen.events.contains(&"ScaleDownRefused".to_string()));
    assert_eq!(admin.calls.lock().as_slice(), ["cluster_status"]);
    api.done().await;
}

#[tokio::test]
async fn scale_up_starts_brokers_then_rebalances_and_reports_progress() {
    let (ctx, mut api, admin) = setup();
    let spec = json!({"replicas": 5});
    let mut world = World {
        sts_replicas: 3,
        update_revision: "r1",
        pods: ready_pods(3, "r1"),
        claims: vec![],
    };
    *admin.status.lock() = Some(status(&[(0, 4), (1, 4), (2, 4)], &[0, 1, 2], 3));
    let (seen, _) = reconcile(&ctx, &mut api, &world, test_cluster(spec.clone(), true)).await;
    assert_eq!(seen.sts_replicas, Some(5));
    assert_eq!(condition(&seen.status, "Ready")["status"], "False");
    assert!(
        !admin
            .calls
            .lock()
            .iter()
            .any(|c| c.starts_with("rebalance"))
    );

    world.sts_replicas = 5;
    world.pods = ready_pods(5, "r1");
    *admin.status.lock() = Some(status(
        &[(0, 4), (1, 4), (2, 4), (3, 0), (4, 0)],
        &[0, 1, 2],
        3,
    ));
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert!(
        admin
            .calls
            .lock()
            .contains(&"rebalance exclude=[]".to_string())
    );
    assert_eq!(seen.status["status"]["rebalance"]["reason"], "ScaleUp");
    assert_eq!(seen.status["status"]["rebalance"]["brokers"], 5);
    assert!(seen.events.contains(&"RebalanceStarted".to_string()));

    // Done (the fake planned no moves): no second rebalance.
    let c = with_status(test_cluster(spec, true), &seen.status);
    let before = admin.calls.lock().len();
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert_eq!(&admin.calls.lock()[before..], ["cluster_status"]);
    assert_eq!(condition(&seen.status, "Rebalancing")["status"], "False");
    api.done().await;
}

#[tokio::test]
async fn rolling_restart_is_one_broker_at_a_time_and_survives_an_operator_restart() {
    let (ctx, mut api, admin) = setup();
    let spec = json!({"replicas": 3});
    let mut world = World {
        sts_replicas: 3,
        update_revision: "r2",
        pods: ready_pods(3, "r1"),
        claims: vec![],
    };
    // Broker 0 is the controller: it goes last, so broker 1 is first.
    *admin.status.lock() = Some(status(&[(0, 4), (1, 4), (2, 4)], &[0, 1, 2], 3));
    let (seen, _) = reconcile(&ctx, &mut api, &world, test_cluster(spec.clone(), true)).await;
    assert!(admin.calls.lock().contains(&"restart_safety 1".to_string()));
    assert_eq!(seen.deleted.len(), 1);
    let (path, body) = &seen.deleted[0];
    assert!(path.ends_with("/pods/demo-broker-1"), "{path}");
    assert_eq!(body["preconditions"]["uid"], "pod-1");
    assert_eq!(seen.status["status"]["restart"]["broker"], 1);
    assert!(seen.events.contains(&"BrokerRestarted".to_string()));
    assert_eq!(
        condition(&seen.status, "Progressing")["reason"],
        "RollingOut"
    );

    // The operator restarts (fresh context, state only in status) while broker 1 is
    // still coming back: nothing else is restarted.
    let (ctx2, mut api2, admin2) = setup();
    *admin2.status.lock() = admin.status.lock().clone();
    world.pods[1] = (1, "r2", false, "pod-1b".into());
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, action) = reconcile(&ctx2, &mut api2, &world, c).await;
    assert!(seen.deleted.is_empty());
    assert_eq!(seen.status["status"]["restart"]["broker"], 1);
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));

    // Back and ready, but a partition would drop below min.insync.replicas: blocked.
    world.pods[1].2 = true;
    *admin2.unsafe_restart.lock() = Some("payments".into());
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx2, &mut api2, &world, c).await;
    assert!(seen.deleted.is_empty());
    let progressing = condition(&seen.status, "Progressing");
    assert_eq!(progressing["reason"], "RollBlocked");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains("payments-0")
    );
    assert!(
        seen.status["status"]
            .get("restart")
            .is_none_or(Value::is_null)
    );

    // Safe again: broker 2 next, then the controller last.
    *admin2.unsafe_restart.lock() = None;
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx2, &mut api2, &world, c).await;
    assert!(seen.deleted[0].0.ends_with("/pods/demo-broker-2"));
    world.pods[2] = (2, "r2", true, "pod-2b".into());
    let c = with_status(test_cluster(spec.clone(), true), &seen.status);
    let (seen, _) = reconcile(&ctx2, &mut api2, &world, c).await;
    assert!(seen.deleted[0].0.ends_with("/pods/demo-broker-0"));
    api.done().await;
    api2.done().await;
}

#[tokio::test]
async fn ready_waits_for_full_replication() {
    let (ctx, mut api, admin) = setup();
    let world = World {
        sts_replicas: 3,
        update_revision: "r1",
        pods: ready_pods(3, "r1"),
        claims: vec![],
    };
    let mut st = status(&[(0, 4), (1, 4), (2, 4)], &[0, 1, 2], 3);
    st.under_replicated_partitions = 2;
    *admin.status.lock() = Some(st);
    let (seen, _) = reconcile(
        &ctx,
        &mut api,
        &world,
        test_cluster(json!({"replicas": 3}), true),
    )
    .await;
    let ready = condition(&seen.status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("UnderReplicated"))
    );
    api.done().await;
}

#[tokio::test]
async fn dynamic_settings_are_applied_without_a_restart() {
    let (ctx, mut api, admin) = setup();
    let world = World {
        sts_replicas: 3,
        update_revision: "r1",
        pods: ready_pods(3, "r1"),
        claims: vec![],
    };
    *admin.status.lock() = Some(status(&[(0, 4), (1, 4), (2, 4)], &[0, 1, 2], 3));
    let spec =
        json!({"replicas": 3, "config": {"log.retention.ms": "3600000", "num.io.threads": "8"}});
    let (seen, _) = reconcile(&ctx, &mut api, &world, test_cluster(spec, true)).await;
    assert!(seen.deleted.is_empty());
    assert_eq!(
        admin
            .cluster_configs
            .lock()
            .get("log.retention.ms")
            .map(String::as_str),
        Some("3600000")
    );
    assert!(!admin.cluster_configs.lock().contains_key("num.io.threads"));
    assert_eq!(
        seen.status["status"]["dynamicConfig"]["log.retention.ms"],
        "3600000"
    );

    // Removed from the spec: removed from the brokers.
    let c = with_status(test_cluster(json!({"replicas": 3}), true), &seen.status);
    let (seen, _) = reconcile(&ctx, &mut api, &world, c).await;
    assert!(admin.cluster_configs.lock().is_empty());
    assert!(
        seen.status["status"]
            .get("dynamicConfig")
            .is_none_or(|d| d.is_null() || d == &json!({}))
    );
    api.done().await;
}
