//! Controller tests against kube's mock API service (the `tower-test` pattern of kube-rs's
//! controller-rs example): every request a reconcile makes is checked in order, and
//! answered as the API server would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::{Client, Resource};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice_api::admin::{
    Acl, AclFilter, AlterTopicConfigRequest, ClusterStatus, CreateTopicRequest,
    PartitionDescription, Quota, RebalancePlan, RebalanceProgress, RestartSafety,
    ScramCredentialInfo, SetQuotasRequest, TopicDescription, UpsertUserRequest, UserDescription,
};

use super::{Context, cluster, topic};
use crate::admin::{AdminConnector, AdminError, BrokerAdmin};
use crate::crd::{Cluster, Topic};
use crate::reconcile::Settings;
use crate::telemetry::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Plays the API server: each `expect` takes the next request and answers it.
struct ApiServer(Handle);

impl ApiServer {
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: u16,
        reply: impl FnOnce(&Value) -> Value,
    ) -> Value {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("client gone before {method} {path}"));
        assert_eq!(
            (req.method(), req.uri().path()),
            (&method, path),
            "unexpected request (query: {:?})",
            req.uri().query()
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let answer = if status == 200 || status == 201 {
            reply(&body)
        } else {
            let reason = match status {
                404 => "NotFound",
                409 => "Conflict",
                _ => "InternalError",
            };
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status, "reason": reason, "message": format!("mock {status}")})
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        body
    }

    /// Server-side apply: answers with what was applied.
    async fn apply(&mut self, path: &str) -> Value {
        self.expect(Method::PATCH, path, 200, |b| b.clone()).await
    }

    /// An Event: created, or (a repeat on the shared recorder) patched into a series.
    async fn event(&mut self) -> Value {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("timed out waiting for an event")
            .expect("client gone before an event");
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        assert!(
            path.starts_with("/apis/events.k8s.io/v1/namespaces/streaming/events")
                && (method == Method::POST || method == Method::PATCH),
            "expected an event, got {method} {path}"
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let mut answer = body.clone();
        if answer.get("metadata").is_none() {
            answer = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x"}, "eventTime": null});
        }
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        body
    }

    async fn done(mut self) {
        let next = tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await;
        if let Ok(Some((req, _))) = next {
            panic!("unexpected extra request {} {}", req.method(), req.uri());
        }
    }
}

/// An in-memory broker admin API.
#[derive(Default)]
struct FakeAdmin {
    topics: Mutex<BTreeMap<String, TopicDescription>>,
    unavailable: Mutex<bool>,
    calls: Mutex<Vec<String>>,
    registered_brokers: Mutex<i32>,
    /// Replaces the status `cluster_status` derives from `registered_brokers`.
    status: Mutex<Option<ClusterStatus>>,
    /// `restart_safety` answers unsafe with this partition.
    unsafe_restart: Mutex<Option<String>>,
    refuse_deletes: Mutex<bool>,
    cluster_configs: Mutex<BTreeMap<String, String>>,
    /// name -> (password, description)
    users: Mutex<BTreeMap<String, (String, UserDescription)>>,
    acls: Mutex<Vec<Acl>>,
    quotas: Mutex<QuotaMap>,
}

fn description(
    name: &str,
    partitions: i32,
    rf: i32,
    configs: BTreeMap<String, String>,
) -> TopicDescription {
    TopicDescription {
        name: name.into(),
        topic_id: "1b9d6c3e-0000-4000-8000-00000000abcd".into(),
        internal: false,
        replication_factor: rf,
        partitions: (0..partitions)
            .map(|p| PartitionDescription {
                partition: p,
                leader: 0,
                leader_epoch: 0,
                replicas: vec![0],
                isr: vec![0],
                ..Default::default()
            })
            .collect(),
        configs,
    }
}

impl FakeAdmin {
    fn check(&self, call: String) -> Result<(), AdminError> {
        self.calls.lock().push(call);
        if *self.unavailable.lock() {
            return Err(AdminError::Unavailable {
                endpoint: "fake".into(),
                message: "connection refused".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BrokerAdmin for FakeAdmin {
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, AdminError> {
        self.check(format!("describe {name}"))?;
        Ok(self.topics.lock().get(name).cloned())
    }
    async fn create_topic(&self, req: CreateTopicRequest) -> Result<TopicDescription, AdminError> {
        self.check(format!("create {}", req.name))?;
        if req.configs.contains_key("no.such.config") {
            return Err(AdminError::Rejected(
                "INVALID_CONFIG: Unknown topic config name: no.such.config".into(),
            ));
        }
        let d = description(
            &req.name,
            req.partitions.unwrap_or(1),
            req.replication_factor.unwrap_or(1),
            req.configs,
        );
        self.topics.lock().insert(req.name, d.clone());
        Ok(d)
    }
    async fn alter_topic_config(
        &self,
        req: AlterTopicConfigRequest,
    ) -> Result<TopicDescription, AdminError> {
        self.check(format!("alter {}", req.name))?;
        let mut topics = self.topics.lock();
        let t = topics
            .get_mut(&req.name)
            .ok_or_else(|| AdminError::Rejected("UNKNOWN_TOPIC_OR_PARTITION".into()))?;
        for k in &req.remove {
            t.configs.remove(k);
        }
        t.configs.extend(req.set);
        Ok(t.clone())
    }
    async fn add_partitions(&self, name: &str, count: i32) -> Result<TopicDescription, AdminError> {
        self.check(format!("add_partitions {name} {count}"))?;
        let mut topics = self.topics.lock();
        let t = topics
            .get_mut(name)
            .ok_or_else(|| AdminError::Rejected("UNKNOWN_TOPIC_OR_PARTITION".into()))?;
        *t = description(name, count, t.replication_factor, t.configs.clone());
        Ok(t.clone())
    }
    async fn delete_topic(&self, name: &str) -> Result<bool, AdminError> {
        self.check(format!("delete {name}"))?;
        if *self.refuse_deletes.lock() {
            return Err(AdminError::Rejected(
                "TOPIC_DELETION_DISABLED: Topic deletion is disabled (delete.topic.enable=false)"
                    .into(),
            ));
        }
        Ok(self.topics.lock().remove(name).is_some())
    }
    async fn cluster_status(&self) -> Result<ClusterStatus, AdminError> {
        self.check("cluster_status".into())?;
        if let Some(s) = self.status.lock().clone() {
            return Ok(s);
        }
        let brokers = (0..*self.registered_brokers.lock())
            .map(|id| sluice_api::admin::BrokerDescription {
                broker_id: id,
                rack: String::new(),
                endpoints: vec![],
                fenced: false,
                ..Default::default()
            })
            .collect();
        let n = *self.registered_brokers.lock();
        Ok(ClusterStatus {
            cluster_id: "Xk3N2-cluster-id".into(),
            controller_id: 0,
            quorum: Some(sluice_api::admin::QuorumStatus {
                leader_id: 0,
                voters: (0..n.clamp(1, 3)).collect(),
                ..Default::default()
            }),
            brokers,
            topics: 0,
            partitions: 0,
            under_replicated_partitions: 0,
            offline_partitions: 0,
            ..Default::default()
        })
    }
    async fn rebalance(
        &self,
        exclude: Vec<i32>,
        _throttle: Option<i64>,
    ) -> Result<RebalancePlan, AdminError> {
        self.check(format!("rebalance exclude={exclude:?}"))?;
        // One move per broker to empty; nothing to do for a plain rebalance.
        Ok(RebalancePlan {
            moves: exclude
                .iter()
                .map(|b| sluice_api::admin::PartitionMove {
                    topic: "orders".into(),
                    partition: *b,
                    bytes: 1000,
                    ..Default::default()
                })
                .collect(),
            bytes_to_move: 1000 * exclude.len() as i64,
            ..Default::default()
        })
    }
    async fn drain_broker(
        &self,
        broker: i32,
        _throttle: Option<i64>,
    ) -> Result<RebalancePlan, AdminError> {
        self.check(format!("drain {broker}"))?;
        Ok(RebalancePlan::default())
    }
    async fn rebalance_progress(&self) -> Result<RebalanceProgress, AdminError> {
        self.check("rebalance_progress".into())?;
        Ok(RebalanceProgress::default())
    }
    async fn set_quorum_voters(&self, voters: Vec<i32>) -> Result<(), AdminError> {
        self.check(format!("voters {voters:?}"))
    }
    async fn unregister_broker(&self, broker: i32) -> Result<bool, AdminError> {
        self.check(format!("unregister {broker}"))?;
        Ok(true)
    }
    async fn restart_safety(&self, broker: i32) -> Result<RestartSafety, AdminError> {
        self.check(format!("restart_safety {broker}"))?;
        Ok(match self.unsafe_restart.lock().clone() {
            None => RestartSafety {
                safe: true,
                ..Default::default()
            },
            Some(topic) => RestartSafety {
                safe: false,
                blocking: vec![sluice_api::admin::PartitionRisk {
                    topic,
                    partition: 0,
                    isr: vec![broker, 2],
                    min_insync_replicas: 2,
                }],
                ..Default::default()
            },
        })
    }
    async fn alter_cluster_configs(
        &self,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        self.check(format!("cluster_configs set={set:?} remove={remove:?}"))?;
        let mut c = self.cluster_configs.lock();
        for k in &remove {
            c.remove(k);
        }
        c.extend(set);
        Ok(c.clone())
    }
    async fn upsert_user(&self, req: UpsertUserRequest) -> Result<UserDescription, AdminError> {
        self.check(format!("upsert_user {}", req.name))?;
        let d = UserDescription {
            name: req.name.clone(),
            credentials: req
                .mechanisms
                .iter()
                .map(|m| ScramCredentialInfo {
                    mechanism: m.clone(),
                    iterations: req.iterations.max(4096),
                })
                .collect(),
        };
        self.users
            .lock()
            .insert(req.name, (req.password, d.clone()));
        Ok(d)
    }
    async fn delete_user(&self, name: &str) -> Result<bool, AdminError> {
        self.check(format!("delete_user {name}"))?;
        Ok(self.users.lock().remove(name).is_some())
    }
    async fn list_users(&self) -> Result<Vec<UserDescription>, AdminError> {
        self.check("list_users".into())?;
        Ok(self.users.lock().values().map(|(_, d)| d.clone()).collect())
    }
    async fn replace_principal_acls(
        &self,
        principal: &str,
        acls: Vec<Acl>,
    ) -> Result<Vec<Acl>, AdminError> {
        self.check(format!("replace_acls {principal} {}", acls.len()))?;
        let mut all = self.acls.lock();
        all.retain(|a| a.principal != principal);
        all.extend(acls.iter().cloned());
        Ok(acls)
    }
    async fn list_acls(&self, filter: AclFilter) -> Result<Vec<Acl>, AdminError> {
        self.check(format!("list_acls {}", filter.principal))?;
        Ok(self
            .acls
            .lock()
            .iter()
            .filter(|a| filter.principal.is_empty() || a.principal == filter.principal)
            .cloned()
            .collect())
    }
    async fn set_quotas(&self, req: SetQuotasRequest) -> Result<Vec<Quota>, AdminError> {
        self.check(format!("set_quotas {}", req.user))?;
        let mut all = self.quotas.lock();
        let key = (req.user.clone(), req.client_id.clone());
        let entry = all.entry(key).or_default();
        for k in &req.remove {
            entry.remove(k);
        }
        entry.extend(req.set);
        Ok(quota_list(&all))
    }
    async fn list_quotas(&self) -> Result<Vec<Quota>, AdminError> {
        self.check("list_quotas".into())?;
        Ok(quota_list(&self.quotas.lock()))
    }
}

type QuotaMap = BTreeMap<(String, String), BTreeMap<String, f64>>;

fn quota_list(all: &QuotaMap) -> Vec<Quota> {
    all.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|((user, client_id), v)| Quota {
            user: user.clone(),
            client_id: client_id.clone(),
            values: v.clone().into_iter().collect(),
        })
        .collect()
}

struct FakeConnector(Arc<FakeAdmin>);

impl AdminConnector for FakeConnector {
    fn connect(&self, _: &Cluster) -> Result<Arc<dyn BrokerAdmin>, AdminError> {
        Ok(self.0.clone())
    }
}

fn setup() -> (Arc<Context>, ApiServer, Arc<FakeAdmin>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let admin = Arc::new(FakeAdmin::default());
    *admin.registered_brokers.lock() = 3;
    let client = Client::new(service, "default");
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: Settings::default(),
        admin: Arc::new(FakeConnector(admin.clone())),
        metrics: Arc::new(Metrics::default()),
        recorder: kube::runtime::events::Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-operator".into(),
                instance: Some("test".into()),
            },
        ),
        topic_resync: Duration::from_secs(60),
        topics: None,
    });
    (ctx, ApiServer(handle), admin)
}

fn test_cluster(spec: Value, finalizer: bool) -> Cluster {
    let mut c: Cluster = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "demo", "namespace": "streaming", "uid": "2f1c6b0e-0000-4000-8000-000000000001", "generation": 2},
        "spec": spec,
    }))
    .unwrap();
    if finalizer {
        c.meta_mut().finalizers = Some(vec![cluster::FINALIZER.into()]);
    }
    c
}

const NS: &str = "/namespaces/streaming";

fn sts_with_status(applied: &Value, ready: i32) -> Value {
    let mut s = applied.clone();
    s["metadata"]["generation"] = json!(1);
    s["status"] = json!({"replicas": 3, "readyReplicas": ready, "updatedReplicas": 3, "observedGeneration": 1,
        "currentRevision": "r1", "updateRevision": "r1", "availableReplicas": ready});
    s
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

/// The objects one Cluster apply writes, in order, as the API server saw them.
struct Applied {
    service_account: Value,
    config_map: Value,
    rack_binding: Option<Value>,
    stateful_set: Value,
}

/// `count` broker pods on revision r1, the first `ready` of them ready.
fn pod_list(count: i32, ready: i32) -> Value {
    let items: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "metadata": {"name": format!("demo-broker-{i}"), "uid": format!("pod-{i}"),
                             "labels": {"apps.kubernetes.io/pod-index": i.to_string(), "controller-revision-hash": "r1"}},
                "status": {
                    "conditions": [{"type": "Ready", "status": if i < ready { "True" } else { "False" }}],
                    "containerStatuses": [{"name": "broker", "ready": i < ready, "restartCount": 0,
                                           "image": "x", "imageID": "", "started": i < ready,
                                           "state": {"running": {}}}]
                }
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
}

/// What the controller reads before it decides: the StatefulSet (absent), the pods, the
/// volumes.
async fn expect_observation(api: &mut ApiServer, pods: Value) {
    api.expect(
        Method::GET,
        &format!("/apis/apps/v1{NS}/statefulsets/demo-broker"),
        404,
        |_| Value::Null,
    )
    .await;
    api.expect(Method::GET, &format!("/api/v1{NS}/pods"), 200, |_| pods)
        .await;
    api.expect(
        Method::GET,
        &format!("/api/v1{NS}/persistentvolumeclaims"),
        200,
        |_| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": []}),
    )
    .await;
}

/// Expects the full apply sequence; the StatefulSet comes back with `ready` brokers.
async fn expect_cluster_objects(api: &mut ApiServer, rack: bool, ready: i32) -> Applied {
    expect_observation(api, pod_list(3, ready)).await;
    let service_account = api
        .apply(&format!("/api/v1{NS}/serviceaccounts/demo-broker"))
        .await;
    let config_map = api
        .apply(&format!("/api/v1{NS}/configmaps/demo-config"))
        .await;
    api.apply(&format!("/api/v1{NS}/services/demo-brokers"))
        .await;
    api.apply(&format!("/api/v1{NS}/services/demo-bootstrap"))
        .await;
    let binding =
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sluice-rack.streaming.demo";
    let rack_binding = if rack {
        Some(api.apply(binding).await)
    } else {
        // No rack awareness: a leftover binding would be removed (404 = nothing there).
        api.expect(Method::GET, binding, 404, |_| Value::Null).await;
        None
    };
    let stateful_set = api
        .expect(
            Method::PATCH,
            &format!("/apis/apps/v1{NS}/statefulsets/demo-broker"),
            200,
            |b| sts_with_status(b, ready),
        )
        .await;
    api.apply(&format!(
        "/apis/policy/v1{NS}/poddisruptionbudgets/demo-broker"
    ))
    .await;
    Applied {
        service_account,
        config_map,
        rack_binding,
        stateful_set,
    }
}

/// Expects the Cluster's status write and returns the patch.
async fn expect_cluster_status(api: &mut ApiServer) -> Value {
    api.expect(
        Method::PATCH,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo/status"),
        200,
        |_| serde_json::to_value(test_cluster(json!({}), true)).unwrap(),
    )
    .await
}

mod day2;

#[tokio::test]
async fn rack_aware_cluster_gets_the_finalizer_first() {
    let (ctx, mut api, _) = setup();
    let c = test_cluster(json!({"rack": {}}), false);
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    let patch = api
        .expect(
            Method::PATCH,
            &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
            200,
            |_| serde_json::to_value(test_cluster(json!({"rack": {}}), true)).unwrap(),
        )
        .await;
    assert!(patch.to_string().contains(cluster::FINALIZER), "{patch}");
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    api.done().await;
}

#[tokio::test]
async fn cluster_without_rack_needs_no_finalizer() {
    let (ctx, mut api, _) = setup();
    let c = test_cluster(json!({}), false);
    let task = tokio::spawn(cluster::reconcile(Arc::new(c.clone()), ctx.clone()));
    // Straight to observing and applying objects: no finalizer patch.
    expect_observation(&mut api, pod_list(0, 0)).await;
    api.expect(
        Method::PATCH,
        &format!("/api/v1{NS}/serviceaccounts/demo-broker"),
        500,
        |_| Value::Null,
    )
    .await;
    api.event().await;
    api.expect(
        Method::PATCH,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo/status"),
        200,
        |_| serde_json::to_value(test_cluster(json!({}), false)).unwrap(),
    )
    .await;
    assert!(task.await.unwrap().is_err());
    // Being deleted without a finalizer: nothing to do.
    let mut gone = c;
    gone.meta_mut().deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    assert_eq!(
        cluster::reconcile(Arc::new(gone), ctx).await.unwrap(),
        Action::await_change()
    );
    api.done().await;
}

#[tokio::test]
async fn cluster_apply_creates_objects_and_reports_ready() {
    let (ctx, mut api, admin) = setup();
    let c = test_cluster(json!({"replicas": 3}), true);
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    let applied = expect_cluster_objects(&mut api, false, 3).await;
    assert_eq!(applied.service_account["kind"], "ServiceAccount");
    assert!(
        applied.config_map["data"]["server.properties"]
            .as_str()
            .unwrap()
            .contains("internal.listener=0.0.0.0:9093")
    );
    let sts = &applied.stateful_set;
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["metadata"]["ownerReferences"][0]["name"], "demo");
    let applied = api.event().await;
    assert_eq!(applied["reason"], "Applied");
    let ready = api.event().await;
    assert_eq!(ready["reason"], "Ready");
    let status = expect_cluster_status(&mut api).await;
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Progressing")["status"], "False");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    assert_eq!(status["status"]["readyReplicas"], 3);
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(status["status"]["clusterId"], "Xk3N2-cluster-id");
    assert_eq!(
        status["status"]["bootstrapServers"],
        "demo-bootstrap.streaming.svc:9092"
    );
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(300))
    );
    assert_eq!(admin.calls.lock().as_slice(), ["cluster_status"]);
    api.done().await;
}

#[tokio::test]
async fn brokers_that_did_not_join_one_cluster_are_degraded() {
    let (ctx, mut api, admin) = setup();
    *admin.registered_brokers.lock() = 1;
    let c = test_cluster(json!({"replicas": 3}), true);
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    expect_cluster_objects(&mut api, false, 3).await;
    let warning = api.event().await;
    assert_eq!(warning["reason"], "BrokersNotClustered");
    api.event().await;
    api.event().await;
    let status = expect_cluster_status(&mut api).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("BrokersNotClustered"))
    );
    assert_eq!(status["status"]["registeredBrokers"], 1);
    task.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn cluster_not_ready_and_rack_binding() {
    let (ctx, mut api, _) = setup();
    let c = test_cluster(json!({"replicas": 3, "rack": {}}), true);
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    let applied = expect_cluster_objects(&mut api, true, 0).await;
    assert_eq!(
        applied.rack_binding.unwrap()["roleRef"]["name"],
        "sluice-broker-rack"
    );
    api.event().await;
    let status = expect_cluster_status(&mut api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("BrokersNotReady"))
    );
    assert_eq!(ready["message"], "0/3 brokers ready");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(15))
    );
    api.done().await;
}

#[tokio::test]
async fn invalid_cluster_spec_gives_a_condition_not_a_crash() {
    let (ctx, mut api, _) = setup();
    let c = test_cluster(
        json!({"listeners": [{"name": "SASL_SSL", "port": 9094}]}),
        true,
    );
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    let ev = api.event().await;
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );
    let status = expect_cluster_status(&mut api).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(degraded["message"].as_str().unwrap().contains("SASL_SSL"));
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(300))
    );
    api.done().await;
}

#[tokio::test]
async fn api_errors_surface_as_reconcile_errors() {
    let (ctx, mut api, _) = setup();
    let c = test_cluster(json!({}), true);
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    expect_observation(&mut api, pod_list(0, 0)).await;
    api.expect(
        Method::PATCH,
        &format!("/api/v1{NS}/serviceaccounts/demo-broker"),
        500,
        |_| Value::Null,
    )
    .await;
    // The failure is visible on the Cluster, not only in the operator's log.
    let ev = api.event().await;
    assert_eq!(ev["reason"], "ApplyFailed");
    let status = expect_cluster_status(&mut api).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["reason"], "ApplyFailed");
    assert!(degraded["message"].as_str().unwrap().contains("mock 500"));
    let err = task.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("mock 500"), "{err}");
    assert_eq!(err.metric_label(), "kube");
    api.done().await;
}

#[tokio::test]
async fn cluster_deletion_removes_the_rack_binding_then_the_finalizer() {
    let (ctx, mut api, _) = setup();
    let mut c = test_cluster(json!({"rack": {}}), true);
    c.meta_mut().deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let binding = {
        let mut b = serde_json::to_value(crate::reconcile::rbac::rack_binding(
            &c,
            &Settings::default(),
        ))
        .unwrap();
        b["metadata"]["uid"] = json!("b1nd1ng0-0000-4000-8000-000000000001");
        b
    };
    let task = tokio::spawn(cluster::reconcile(Arc::new(c), ctx));
    api.expect(
        Method::GET,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sluice-rack.streaming.demo",
        200,
        move |_| binding,
    )
    .await;
    let del = api
        .expect(
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sluice-rack.streaming.demo",
            200,
            |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
        .await;
    // Only the binding that was checked: delete with its uid as precondition.
    assert_eq!(
        del["preconditions"]["uid"],
        "b1nd1ng0-0000-4000-8000-000000000001"
    );
    let ev = api.event().await;
    assert_eq!(ev["reason"], "Deleted");
    let patch = api
        .expect(
            Method::PATCH,
            &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
            200,
            |_| serde_json::to_value(test_cluster(json!({}), false)).unwrap(),
        )
        .await;
    assert!(patch.to_string().contains("remove"), "{patch}");
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    api.done().await;
}

fn test_topic(spec: Value) -> Topic {
    let mut t: Topic = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": "streaming", "uid": "7a000000-0000-4000-8000-000000000001", "generation": 1,
                     "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": spec,
    }))
    .unwrap();
    t.meta_mut().finalizers = Some(vec![topic::FINALIZER.into()]);
    t
}

fn ready_cluster() -> Value {
    let mut c = serde_json::to_value(test_cluster(json!({}), true)).unwrap();
    c["status"] = json!({"readyReplicas": 1, "replicas": 1, "conditions": []});
    c
}

fn topic_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "TopicList", "metadata": {}, "items": items})
}

async fn expect_topic_prelude(api: &mut ApiServer, me: &Topic) {
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
        200,
        |_| ready_cluster(),
    )
    .await;
    let me = serde_json::to_value(me).unwrap();
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/topics"),
        200,
        |_| topic_list(vec![me]),
    )
    .await;
}

async fn topic_status(api: &mut ApiServer) -> Value {
    api.expect(
        Method::PATCH,
        &format!("/apis/sluice.dev/v1alpha1{NS}/topics/orders/status"),
        200,
        |_| serde_json::to_value(test_topic(json!({"clusterRef": "demo"}))).unwrap(),
    )
    .await
}

#[tokio::test]
async fn topic_is_created_then_drift_is_corrected() {
    let (ctx, mut api, admin) = setup();
    let t = test_topic(
        json!({"clusterRef": "demo", "topicName": "Orders_v1", "partitions": 6, "config": {"retention.ms": "86400000"}}),
    );
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx.clone()));
    expect_topic_prelude(&mut api, &t).await;
    let ev = api.event().await;
    assert_eq!(ev["reason"], "Created");
    let status = topic_status(&mut api).await;
    assert_eq!(status["status"]["topicName"], "Orders_v1");
    assert_eq!(status["status"]["partitions"], 6);
    assert_eq!(status["status"]["config"]["retention.ms"], "86400000");
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );

    // Someone changes the topic with Kafka tools: retention changed, an override added.
    {
        let mut topics = admin.topics.lock();
        let d = topics.get_mut("Orders_v1").unwrap();
        d.configs.insert("retention.ms".into(), "1000".into());
        d.configs.insert("segment.bytes".into(), "1048576".into());
    }
    let mut t2 = t.clone();
    t2.status = serde_json::from_value(status["status"].clone()).unwrap();
    let task = tokio::spawn(topic::reconcile(Arc::new(t2.clone()), ctx));
    expect_topic_prelude(&mut api, &t2).await;
    let ev = api.event().await;
    assert_eq!(ev["reason"], "ConfigChanged");
    assert!(
        ev["note"]
            .as_str()
            .unwrap()
            .contains("removed [segment.bytes]"),
        "{ev}"
    );
    // Status unchanged (same config again): no status write.
    task.await.unwrap().unwrap();
    let configs = admin.topics.lock()["Orders_v1"].configs.clone();
    assert_eq!(
        configs,
        BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())])
    );
    api.done().await;
}

#[tokio::test]
async fn partition_decrease_is_refused_with_a_condition() {
    let (ctx, mut api, admin) = setup();
    admin.topics.lock().insert(
        "orders".into(),
        description("orders", 12, 1, BTreeMap::new()),
    );
    let t = test_topic(json!({"clusterRef": "demo", "partitions": 3}));
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx));
    expect_topic_prelude(&mut api, &t).await;
    let ev = api.event().await;
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("PartitionDecreaseRefused"))
    );
    let status = topic_status(&mut api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("has 12 partitions"),
        "{ready}"
    );
    assert_eq!(status["status"]["partitions"], 12);
    task.await.unwrap().unwrap();
    assert_eq!(admin.topics.lock()["orders"].partitions.len(), 12);
    api.done().await;
}

#[tokio::test]
async fn topic_waits_for_its_cluster_and_reports_broker_errors() {
    let (ctx, mut api, admin) = setup();
    let t = test_topic(json!({"clusterRef": "demo"}));
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx.clone()));
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
        404,
        |_| Value::Null,
    )
    .await;
    let status = topic_status(&mut api).await;
    assert_eq!(condition(&status, "Ready")["reason"], "ClusterNotFound");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );

    *admin.unavailable.lock() = true;
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx.clone()));
    expect_topic_prelude(&mut api, &t).await;
    let status = topic_status(&mut api).await;
    assert_eq!(condition(&status, "Ready")["reason"], "BrokerUnavailable");
    task.await.unwrap().unwrap();

    *admin.unavailable.lock() = false;
    let t = test_topic(json!({"clusterRef": "demo", "config": {"no.such.config": "1"}}));
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx));
    expect_topic_prelude(&mut api, &t).await;
    let ev = api.event().await;
    assert_eq!(ev["reason"], "Rejected");
    let status = topic_status(&mut api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "Rejected");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("INVALID_CONFIG")
    );
    task.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn second_topic_for_the_same_kafka_topic_is_a_conflict() {
    let (ctx, mut api, admin) = setup();
    let mine = test_topic(json!({"clusterRef": "demo", "topicName": "orders"}));
    let mut older: Value = serde_json::to_value(test_topic(json!({"clusterRef": "demo"}))).unwrap();
    older["metadata"]["name"] = json!("orders-original");
    older["metadata"]["uid"] = json!("7a000000-0000-4000-8000-000000000000");
    older["metadata"]["creationTimestamp"] = json!("2026-10-01T00:00:00Z");
    older["spec"]["topicName"] = json!("orders");
    let task = tokio::spawn(topic::reconcile(Arc::new(mine.clone()), ctx));
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
        200,
        |_| ready_cluster(),
    )
    .await;
    let me = serde_json::to_value(&mine).unwrap();
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/topics"),
        200,
        |_| topic_list(vec![older, me]),
    )
    .await;
    let ev = api.event().await;
    assert_eq!(ev["reason"], "Conflict");
    let status = topic_status(&mut api).await;
    assert!(
        condition(&status, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("orders-original")
    );
    task.await.unwrap().unwrap();
    assert!(
        admin.calls.lock().is_empty(),
        "a conflicting Topic must not touch the broker"
    );
    api.done().await;
}

#[tokio::test]
async fn topic_deletion_deletes_the_kafka_topic_then_the_finalizer() {
    let (ctx, mut api, admin) = setup();
    admin.topics.lock().insert(
        "orders".into(),
        description("orders", 3, 1, BTreeMap::new()),
    );
    let mut t = test_topic(json!({"clusterRef": "demo"}));
    t.status = Some(crate::crd::TopicStatus {
        topic_id: Some("x".into()),
        ..Default::default()
    });
    t.meta_mut().deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx.clone()));
    expect_topic_prelude(&mut api, &t).await;
    let ev = api.event().await;
    assert_eq!(ev["note"], "deleted topic orders");
    api.expect(
        Method::PATCH,
        &format!("/apis/sluice.dev/v1alpha1{NS}/topics/orders"),
        200,
        |_| serde_json::to_value(test_topic(json!({"clusterRef": "demo"}))).unwrap(),
    )
    .await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert!(admin.topics.lock().is_empty());

    // Broker down during deletion: the finalizer stays and the reconcile fails (retried).
    *admin.unavailable.lock() = true;
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx));
    expect_topic_prelude(&mut api, &t).await;
    let ev = api.event().await;
    assert_eq!(ev["reason"], "DeleteFailed");
    assert!(task.await.unwrap().is_err());
    api.done().await;
}

async fn release_topic_finalizer(api: &mut ApiServer) -> Value {
    api.expect(
        Method::PATCH,
        "/apis/sluice.dev/v1alpha1/namespaces/streaming/topics/orders",
        200,
        |_| serde_json::to_value(test_topic(json!({"clusterRef": "demo"}))).unwrap(),
    )
    .await
}

#[tokio::test]
async fn topic_deletion_keeps_topics_that_must_stay() {
    let (ctx, mut api, admin) = setup();
    admin.topics.lock().insert(
        "orders".into(),
        description("orders", 3, 1, BTreeMap::new()),
    );
    let deleting = |annotations: Value| {
        let mut t = test_topic(json!({"clusterRef": "demo"}));
        t.status = Some(crate::crd::TopicStatus {
            topic_id: Some("x".into()),
            ..Default::default()
        });
        t.meta_mut().annotations = serde_json::from_value(annotations).unwrap();
        t.meta_mut().deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        t
    };

    // Retain policy: no broker call at all.
    let t = deleting(json!({"sluice.dev/deletion-policy": "retain"}));
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    assert_eq!(api.event().await["reason"], "Retained");
    release_topic_finalizer(&mut api).await;
    task.await.unwrap().unwrap();

    // Another (newer) Topic still declares the Kafka topic: keep it.
    let t = deleting(Value::Null);
    let mut newer = serde_json::to_value(test_topic(json!({"clusterRef": "demo"}))).unwrap();
    newer["metadata"]["name"] = json!("orders-copy");
    newer["metadata"]["uid"] = json!("7a000000-0000-4000-8000-000000000009");
    newer["metadata"]["creationTimestamp"] = json!("2026-11-20T00:00:00Z");
    newer["spec"]["topicName"] = json!("orders");
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx.clone()));
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
        200,
        |_| ready_cluster(),
    )
    .await;
    let me = serde_json::to_value(&t).unwrap();
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/topics"),
        200,
        |_| topic_list(vec![me, newer]),
    )
    .await;
    let ev = api.event().await;
    assert!(ev["note"].as_str().unwrap().contains("orders-copy"), "{ev}");
    release_topic_finalizer(&mut api).await;
    task.await.unwrap().unwrap();
    assert!(admin.calls.lock().is_empty());
    assert!(admin.topics.lock().contains_key("orders"));

    // The broker refuses deletion for good (delete.topic.enable=false): the resource goes,
    // the topic stays, with a warning; no retry loop.
    *admin.refuse_deletes.lock() = true;
    let t = deleting(Value::Null);
    let task = tokio::spawn(topic::reconcile(Arc::new(t.clone()), ctx));
    expect_topic_prelude(&mut api, &t).await;
    let ev = api.event().await;
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("DeleteRefused"))
    );
    release_topic_finalizer(&mut api).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert!(admin.topics.lock().contains_key("orders"));
    api.done().await;
}

#[tokio::test]
async fn conflicts_are_found_in_the_controller_cache_without_listing() {
    use kube::runtime::{reflector, watcher};
    let (ctx, mut api, admin) = setup();
    let mine = test_topic(json!({"clusterRef": "demo", "topicName": "orders"}));
    let mut older: Topic = test_topic(json!({"clusterRef": "demo", "topicName": "orders"}));
    older.metadata.name = Some("orders-original".into());
    older.metadata.uid = Some("7a000000-0000-4000-8000-000000000000".into());
    older.metadata.creation_timestamp =
        serde_json::from_value(json!("2026-10-01T00:00:00Z")).unwrap();
    let (reader, mut writer) = reflector::store::<Topic>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(older));
    writer.apply_watcher_event(&watcher::Event::InitApply(mine.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let ctx = Arc::new(Context {
        topics: Some(reader),
        ..(*ctx).clone()
    });
    let task = tokio::spawn(topic::reconcile(Arc::new(mine), ctx));
    api.expect(
        Method::GET,
        &format!("/apis/sluice.dev/v1alpha1{NS}/clusters/demo"),
        200,
        |_| ready_cluster(),
    )
    .await;
    // No LIST of Topics: straight to the conflict.
    assert_eq!(api.event().await["reason"], "Conflict");
    let status = topic_status(&mut api).await;
    assert!(
        condition(&status, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("orders-original")
    );
    task.await.unwrap().unwrap();
    assert!(admin.calls.lock().is_empty());
    api.done().await;
}
