//! The operator's only way to talk to brokers: the admin gRPC API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_api::admin::admin_client::AdminClient;
use sluice_api::admin::{
    Acl, AclFilter, AddPartitionsRequest, AlterClusterConfigsRequest, AlterTopicConfigRequest,
    ClusterStatus, CreateTopicRequest, DeleteTopicRequest, DeleteUserRequest, DescribeTopicRequest,
    DrainBrokerRequest, GetClusterStatusRequest, GetRebalanceProgressRequest,
    GetRestartSafetyRequest, ListQuotasRequest, ListUsersRequest, Quota, RebalancePlan,
    RebalanceProgress, RebalanceRequest, ReplacePrincipalAclsRequest, RestartSafety,
    SetQuorumVotersRequest, SetQuotasRequest, TopicDescription, UnregisterBrokerRequest,
    UpsertUserRequest, UserDescription,
};
use tonic::transport::{Channel, Endpoint};

use crate::crd::Cluster;
use crate::crd::cluster::INTERNAL_PORT;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// The broker could not be reached or did not answer in time.
    #[error("broker admin API at {endpoint} unreachable: {message}")]
    Unavailable { endpoint: String, message: String },
    /// The broker refused the request (invalid config, too few brokers, ...).
    #[error("{0}")]
    Rejected(String),
}

impl AdminError {
    fn from_status(endpoint: &str, s: tonic::Status) -> Self {
        // A broken connection surfaces as `Unknown` with the transport error as source.
        let transport = std::error::Error::source(&s)
            .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                AdminError::Unavailable {
                    endpoint: endpoint.to_string(),
                    message: s.message().to_string(),
                }
            }
            _ if transport => AdminError::Unavailable {
                endpoint: endpoint.to_string(),
                message: std::error::Error::source(&s)
                    .map(|e| format!("{}: {e}", s.message()))
                    .unwrap_or_else(|| s.message().to_string()),
            },
            _ => AdminError::Rejected(s.message().to_string()),
        }
    }
}

/// Topic and cluster administration as the reconcilers need it. Implemented over gRPC;
/// controller tests substitute an in-memory fake.
#[async_trait::async_trait]
pub trait BrokerAdmin: Send + Sync {
    /// `None` if the topic does not exist.
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, AdminError>;
    async fn create_topic(&self, req: CreateTopicRequest) -> Result<TopicDescription, AdminError>;
    async fn alter_topic_config(
        &self,
        req: AlterTopicConfigRequest,
    ) -> Result<TopicDescription, AdminError>;
    async fn add_partitions(&self, name: &str, count: i32) -> Result<TopicDescription, AdminError>;
    /// `Ok(false)` if the topic was already gone.
    async fn delete_topic(&self, name: &str) -> Result<bool, AdminError>;
    async fn cluster_status(&self) -> Result<ClusterStatus, AdminError>;

    // Day-2 operations.
    /// Plans and starts moves that balance every broker (`exclude`: brokers to empty).
    async fn rebalance(
        &self,
        exclude: Vec<i32>,
        throttle: Option<i64>,
    ) -> Result<RebalancePlan, AdminError>;
    /// Starts moving every replica off `broker`.
    async fn drain_broker(
        &self,
        broker: i32,
        throttle: Option<i64>,
    ) -> Result<RebalancePlan, AdminError>;
    async fn rebalance_progress(&self) -> Result<RebalanceProgress, AdminError>;
    async fn set_quorum_voters(&self, voters: Vec<i32>) -> Result<(), AdminError>;
    /// `Ok(false)` if the broker was not registered.
    async fn unregister_broker(&self, broker: i32) -> Result<bool, AdminError>;
    async fn restart_safety(&self, broker: i32) -> Result<RestartSafety, AdminError>;
    /// Cluster-wide dynamic broker configs; returns the resulting set.
    async fn alter_cluster_configs(
        &self,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<BTreeMap<String, String>, AdminError>;

    // Users.
    async fn upsert_user(&self, req: UpsertUserRequest) -> Result<UserDescription, AdminError>;
    /// `Ok(false)` if the user had no credentials.
    async fn delete_user(&self, name: &str) -> Result<bool, AdminError>;
    async fn list_users(&self) -> Result<Vec<UserDescription>, AdminError>;
    /// Makes `acls` the principal's complete ACL set; returns it.
    async fn replace_principal_acls(
        &self,
        principal: &str,
        acls: Vec<Acl>,
    ) -> Result<Vec<Acl>, AdminError>;
    async fn list_acls(&self, filter: AclFilter) -> Result<Vec<Acl>, AdminError>;
    async fn set_quotas(&self, req: SetQuotasRequest) -> Result<Vec<Quota>, AdminError>;
    async fn list_quotas(&self) -> Result<Vec<Quota>, AdminError>;
}

/// Hands out an admin client per Cluster.
pub trait AdminConnector: Send + Sync {
    fn connect(&self, cluster: &Cluster) -> Result<Arc<dyn BrokerAdmin>, AdminError>;
}

/// gRPC client for one admin endpoint.
#[derive(Clone)]
pub struct GrpcAdmin {
    endpoint: String,
    client: AdminClient<Channel>,
}

impl GrpcAdmin {
    /// Lazily connecting client: creating it never blocks or fails on a dead broker.
    pub fn new(endpoint: &str) -> Result<Self, AdminError> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| AdminError::Unavailable {
                endpoint: endpoint.to_string(),
                message: format!("invalid endpoint: {e}"),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            // A dead node sends no FIN: keepalives notice it in seconds, not minutes.
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Self {
            endpoint: endpoint.to_string(),
            client: AdminClient::new(channel),
        })
    }

    fn err(&self, s: tonic::Status) -> AdminError {
        AdminError::from_status(&self.endpoint, s)
    }

    /// A call's answer, or the failure classified as unreachable or refused.
    fn answer<T>(&self, r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, AdminError> {
        r.map(tonic::Response::into_inner).map_err(|s| self.err(s))
    }
}

#[async_trait::async_trait]
impl BrokerAdmin for GrpcAdmin {
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, AdminError> {
        let req = DescribeTopicRequest { name: name.into() };
        match self.client.clone().describe_topic(req).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(self.err(s)),
        }
    }

    async fn create_topic(&self, req: CreateTopicRequest) -> Result<TopicDescription, AdminError> {
        self.answer(self.client.clone().create_topic(req).await)
    }

    async fn alter_topic_config(
        &self,
        req: AlterTopicConfigRequest,
    ) -> Result<TopicDescription, AdminError> {
        self.answer(self.client.clone().alter_topic_config(req).await)
    }

    async fn add_partitions(&self, name: &str, count: i32) -> Result<TopicDescription, AdminError> {
        let req = AddPartitionsRequest {
            name: name.into(),
            partition_count: count,
            validate_only: false,
        };
        self.answer(self.client.clone().add_partitions(req).await)
    }

    async fn delete_topic(&self, name: &str) -> Result<bool, AdminError> {
        let req = DeleteTopicRequest { name: name.into() };
        match self.client.clone().delete_topic(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(self.err(s)),
        }
    }

    async fn cluster_status(&self) -> Result<ClusterStatus, AdminError> {
        self.answer(
            self.client
                .clone()
                .get_cluster_status(GetClusterStatusRequest {})
                .await,
        )
    }

    async fn rebalance(
        &self,
        exclude: Vec<i32>,
        throttle: Option<i64>,
    ) -> Result<RebalancePlan, AdminError> {
        let req = RebalanceRequest {
            dry_run: false,
            exclude_brokers: exclude,
            throttle_bytes_per_second: throttle,
        };
        self.answer(self.client.clone().rebalance(req).await)
    }

    async fn drain_broker(
        &self,
        broker: i32,
        throttle: Option<i64>,
    ) -> Result<RebalancePlan, AdminError> {
        let req = DrainBrokerRequest {
            broker_id: broker,
            dry_run: false,
            throttle_bytes_per_second: throttle,
        };
        self.answer(self.client.clone().drain_broker(req).await)
    }

    async fn rebalance_progress(&self) -> Result<RebalanceProgress, AdminError> {
        self.answer(
            self.client
                .clone()
                .get_rebalance_progress(GetRebalanceProgressRequest {})
                .await,
        )
    }

    async fn set_quorum_voters(&self, voters: Vec<i32>) -> Result<(), AdminError> {
        self.answer(
            self.client
                .clone()
                .set_quorum_voters(SetQuorumVotersRequest { voters })
                .await,
        )
        .map(drop)
    }

    async fn unregister_broker(&self, broker: i32) -> Result<bool, AdminError> {
        let req = UnregisterBrokerRequest { broker_id: broker };
        match self.client.clone().unregister_broker(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(self.err(s)),
        }
    }

    async fn restart_safety(&self, broker: i32) -> Result<RestartSafety, AdminError> {
        self.answer(
            self.client
                .clone()
                .get_restart_safety(GetRestartSafetyRequest { broker_id: broker })
                .await,
        )
    }

    async fn alter_cluster_configs(
        &self,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let req = AlterClusterConfigsRequest {
            set,
            remove,
            validate_only: false,
        };
        self.answer(self.client.clone().alter_cluster_configs(req).await)
            .map(|r| r.configs)
    }

    async fn upsert_user(&self, req: UpsertUserRequest) -> Result<UserDescription, AdminError> {
        self.answer(self.client.clone().upsert_user(req).await)
    }

    async fn delete_user(&self, name: &str) -> Result<bool, AdminError> {
        let req = DeleteUserRequest { name: name.into() };
        match self.client.clone().delete_user(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(self.err(s)),
        }
    }

    async fn list_users(&self) -> Result<Vec<UserDescription>, AdminError> {
        self.answer(self.client.clone().list_users(ListUsersRequest {}).await)
            .map(|r| r.users)
    }

    async fn replace_principal_acls(
        &self,
        principal: &str,
        acls: Vec<Acl>,
    ) -> Result<Vec<Acl>, AdminError> {
        let req = ReplacePrincipalAclsRequest {
            principal: principal.into(),
            acls,
        };
        self.answer(self.client.clone().replace_principal_acls(req).await)
            .map(|r| r.acls)
    }

    async fn list_acls(&self, filter: AclFilter) -> Result<Vec<Acl>, AdminError> {
        self.answer(self.client.clone().list_acls(filter).await)
            .map(|r| r.acls)
    }

    async fn set_quotas(&self, req: SetQuotasRequest) -> Result<Vec<Quota>, AdminError> {
        self.answer(self.client.clone().set_quotas(req).await)
            .map(|r| r.quotas)
    }

    async fn list_quotas(&self) -> Result<Vec<Quota>, AdminError> {
        self.answer(self.client.clone().list_quotas(ListQuotasRequest {}).await)
            .map(|r| r.quotas)
    }
}

/// `http://{cluster}-broker-0.{cluster}-brokers.{namespace}.svc:9093`: broker 0, a voter
/// of the metadata quorum. Any broker answers for the whole cluster (changes are forwarded
/// to the quorum leader); one fixed address keeps one cached channel.
pub fn admin_endpoint(cluster: &Cluster) -> String {
    format!(
        "http://{}-0.{}.{}.svc:{INTERNAL_PORT}",
        cluster.broker_name(),
        cluster.headless_service_name(),
        cluster.metadata.namespace.as_deref().unwrap_or("default")
    )
}

/// Connects through the cluster's headless Service, one cached channel per endpoint.
#[derive(Default)]
pub struct GrpcConnector {
    clients: Mutex<HashMap<String, GrpcAdmin>>,
}

impl AdminConnector for GrpcConnector {
    fn connect(&self, cluster: &Cluster) -> Result<Arc<dyn BrokerAdmin>, AdminError> {
        let endpoint = admin_endpoint(cluster);
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&endpoint) {
            return Ok(Arc::new(c.clone()));
        }
        let c = GrpcAdmin::new(&endpoint)?;
        clients.insert(endpoint, c.clone());
        Ok(Arc::new(c))
    }
}
