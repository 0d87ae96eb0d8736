//! The admin gRPC API (`proto/sluice/admin/v1/admin.proto`) on `internal.listener`.
//!
//! Every change goes through the same code as the Kafka admin APIs (`protocol::topics`,
//! `protocol::configs`), so the operator and Kafka clients see one set of rules.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use kafka_protocol::ResponseError;
use sluice_api::admin::admin_server::{Admin, AdminServer};
use sluice_api::admin::{
    AddPartitionsRequest, AlterTopicConfigRequest, BrokerDescription, BrokerStatus, ClusterStatus,
    CreateTopicRequest, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest, Endpoint,
    GetBrokerStatusRequest, GetClusterStatusRequest, ListTopicsRequest, ListTopicsResponse,
    LogDirStatus, PartitionDescription, TopicDescription,
};
use sluice_api::admin::{
    AlterClusterConfigsRequest, ClusterConfigs, GetRestartSafetyRequest, PartitionRisk,
    RestartSafety, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use sluice_api::admin::{
    CancelRebalanceRequest, DrainBrokerRequest, GetRebalanceProgressRequest,
    ListPartitionSizesRequest, MovingPartition, PartitionMove, PartitionRef, PartitionSize,
    PartitionSizes, QuorumStatus, RebalancePlan, RebalanceProgress, RebalanceRequest,
    SetQuorumVotersRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::metadata::{ClusterMetadata, TopicMetadata};
use crate::protocol::metadata::is_internal;
use crate::protocol::topics::{self, NewTopic, TopicError};
use crate::protocol::{configs, topics::validate_name};
use crate::security::admin as sec;

/// Serves the internal gRPC API — admin and metadata quorum — until `shutdown`. It starts
/// before the broker is fully up (the quorum is needed to get there); admin calls get
/// UNAVAILABLE until then.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    admin: AdminService,
    quorum: crate::metadata::quorum::service::QuorumService,
    tls: Option<Arc<crate::security::tls::TlsServer>>,
) {
    let addr = listener.local_addr().ok();
    let router = tonic::transport::Server::builder()
        .add_service(AdminServer::new(admin))
        .add_service(sluice_api::quorum::quorum_server::QuorumServer::new(quorum));
    let result = match tls {
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
                .await
        }
        Some(tls) => {
            let incoming = crate::security::internal::incoming(listener, tls, shutdown.clone());
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, addr = ?addr, "internal gRPC server failed");
    }
}

pub struct AdminService {
    cell: Arc<OnceLock<Arc<Broker>>>,
}

impl AdminService {
    pub fn new(cell: Arc<OnceLock<Arc<Broker>>>) -> Self {
        Self { cell }
    }

    fn broker(&self) -> Result<&Arc<Broker>, Status> {
        self.cell
            .get()
            .ok_or_else(|| Status::unavailable("BROKER_NOT_AVAILABLE: the broker is starting"))
    }
}

/// `InvalidPartitions` -> `INVALID_PARTITIONS`, the name Kafka's docs and tools use.
fn kafka_error_name(code: i16) -> String {
    let Some(e) = ResponseError::try_from_code(code) else {
        return format!("ERROR_{code}");
    };
    let name = format!("{e:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn status(e: TopicError) -> Status {
    use ResponseError as E;
    let code = match ResponseError::try_from_code(e.code) {
        Some(E::TopicAlreadyExists) => tonic::Code::AlreadyExists,
        Some(E::UnknownTopicOrPartition | E::UnknownTopicId) => tonic::Code::NotFound,
        Some(
            E::InvalidPartitions
            | E::InvalidReplicationFactor
            | E::InvalidConfig
            | E::InvalidTopicException
            | E::InvalidRequest
            | E::InvalidReplicaAssignment,
        ) => tonic::Code::InvalidArgument,
        Some(E::PolicyViolation | E::TopicDeletionDisabled) => tonic::Code::FailedPrecondition,
        // Metadata could not be persisted or the broker is stopping: worth a retry.
        Some(E::UnknownServerError) => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    };
    Status::new(code, format!("{}: {}", kafka_error_name(e.code), e.message))
}

/// The `set` half of a set-and-remove request; a key in both is a contradiction.
fn set_unless_removed(
    set: BTreeMap<String, String>,
    remove: &[String],
) -> Result<BTreeMap<String, String>, Status> {
    if let Some(k) = remove.iter().find(|k| set.contains_key(*k)) {
        return Err(status(TopicError::new(
            ResponseError::InvalidRequest,
            format!("Config {k} is both set and removed"),
        )));
    }
    Ok(set)
}

fn describe(broker: &Broker, t: &TopicMetadata) -> TopicDescription {
    TopicDescription {
        name: t.name.clone(),
        topic_id: t.id.to_string(),
        internal: is_internal(&t.name),
        replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len() as i32),
        partitions: t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut d = PartitionDescription {
                    partition: i as i32,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start_offset: -1,
                    local_log_start_offset: -1,
                    high_watermark: -1,
                    ..Default::default()
                };
                if let Some(hosted) = broker.replicas.get(&t.name, i as i32) {
                    let (start, _, local_size, _) = hosted.gauges();
                    let remote = hosted.remote_view();
                    d.local_size_bytes = local_size as i64;
                    d.remote_size_bytes = remote.size_bytes as i64;
                    d.remote_segments = remote.segments as i32;
                    d.log_start_offset = start;
                    d.local_log_start_offset = hosted.local_log_start();
                    d.high_watermark = hosted.high_watermark();
                    d.remote_upload_lag_bytes = remote.lag_bytes as i64;
                }
                d
            })
            .collect(),
        configs: t.configs.clone(),
    }
}

pub(crate) fn describe_current(broker: &Broker, name: &str) -> Result<TopicDescription, Status> {
    broker
        .metadata
        .current()
        .topics
        .get(name)
        .map(|t| describe(broker, t))
        .ok_or_else(|| {
            status(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            ))
        })
}

fn progress(md: &ClusterMetadata) -> RebalanceProgress {
    RebalanceProgress {
        moving: crate::rebalance::in_progress(md)
            .into_iter()
            .map(|m| MovingPartition {
                topic: m.topic,
                partition: m.partition,
                replicas: m.replicas,
                adding: m.adding,
                removing: m.removing,
            })
            .collect(),
    }
}

async fn plan_and_run(
    broker: &Arc<Broker>,
    exclude: &[i32],
    dry_run: bool,
    throttle: Option<i64>,
) -> Result<RebalancePlan, Status> {
    if throttle.is_some_and(|t| t <= 0) {
        return Err(Status::invalid_argument(
            "INVALID_CONFIG: throttle_bytes_per_second must be positive",
        ));
    }
    let sizes = crate::rebalance::partition_sizes(broker).await;
    let md = broker.metadata.current();
    // Planning large clusters takes a while: off the request threads.
    let exclude_owned = exclude.to_vec();
    let plan = tokio::task::spawn_blocking(move || {
        crate::rebalance::build_plan(&md, &sizes, &exclude_owned)
    })
    .await
    .map_err(|e| Status::internal(format!("rebalance planner failed: {e}")))?;
    let executed = !dry_run && !plan.moves.is_empty();
    if !dry_run {
        crate::rebalance::execute(broker, &plan, throttle)
            .await
            .map_err(|e| Status::unavailable(format!("REASSIGNMENT_IN_PROGRESS or quorum: {e}")))?;
    }
    Ok(RebalancePlan {
        moves: plan
            .moves
            .iter()
            .map(|m| PartitionMove {
                topic: m.topic.clone(),
                partition: m.partition,
                from_replicas: m.from.clone(),
                to_replicas: m.to.clone(),
                bytes: m.bytes as i64,
            })
            .collect(),
        before: crate::rebalance::loads(&plan.before),
        after: crate::rebalance::loads(&plan.after),
        bytes_to_move: plan.bytes_to_move as i64,
        executed,
    })
}

fn under_replicated(md: &ClusterMetadata) -> impl Iterator<Item = (i32, bool)> + '_ {
    md.topics.values().flat_map(|t| {
        t.partitions
            .iter()
            .map(|p| (p.leader, p.isr.len() < p.replicas.len()))
    })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        req: Request<CreateTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = req.into_inner();
        let rf = match r.replication_factor {
            None => -1,
            Some(rf) => i16::try_from(rf)
                .ok()
                .filter(|rf| *rf >= 1)
                .ok_or_else(|| {
                    status(TopicError::new(
                        ResponseError::InvalidReplicationFactor,
                        format!("Replication factor must be between 1 and 32767, got {rf}"),
                    ))
                })?,
        };
        if r.partitions.is_some_and(|p| p < 1) {
            return Err(status(TopicError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            )));
        }
        let created = topics::create(
            self.broker()?,
            NewTopic {
                name: r.name.clone(),
                num_partitions: r.partitions.unwrap_or(-1),
                replication_factor: rf,
                assignments: None,
                configs: r.configs.clone(),
            },
            r.validate_only,
        )
        .await
        .map_err(status)?;
        if r.validate_only {
            return Ok(Response::new(TopicDescription {
                name: r.name,
                replication_factor: i32::from(created.replication_factor),
                configs: r.configs,
                ..Default::default()
            }));
        }
        describe_current(self.broker()?, &r.name).map(Response::new)
    }

    async fn describe_topic(
        &self,
        req: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let name = req.into_inner().name;
        validate_name(&name).map_err(status)?;
        describe_current(self.broker()?, &name).map(Response::new)
    }

    async fn list_topics(
        &self,
        req: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let include_internal = req.into_inner().include_internal;
        let broker = self.broker()?;
        let md = broker.metadata.current();
        let topics = md
            .topics
            .values()
            .filter(|t| include_internal || !is_internal(&t.name))
            .map(|t| describe(broker, t))
            .collect();
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = req.into_inner();
        let set = set_unless_removed(r.set, &r.remove)?;
        configs::alter_topic_overrides(self.broker()?, &r.name, set, &r.remove, r.validate_only)
            .await
            .map_err(status)?;
        if !r.validate_only {
            tracing::info!(topic = %r.name, "altered topic configs through the admin API");
        }
        describe_current(self.broker()?, &r.name).map(Response::new)
    }

    async fn add_partitions(
        &self,
        req: Request<AddPartitionsRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = req.into_inner();
        topics::add_partitions(
            self.broker()?,
            &r.name,
            r.partition_count,
            None,
            r.validate_only,
        )
        .await
        .map_err(status)?;
        if !r.validate_only {
            tracing::info!(topic = %r.name, partitions = r.partition_count, "added partitions through the admin API");
        }
        describe_current(self.broker()?, &r.name).map(Response::new)
    }

    async fn delete_topic(
        &self,
        req: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = req.into_inner().name;
        validate_name(&name).map_err(status)?;
        if is_internal(&name) {
            return Err(status(TopicError::new(
                ResponseError::InvalidRequest,
                format!("'{name}' is an internal topic and cannot be deleted"),
            )));
        }
        let id = topics::delete(self.broker()?, &name)
            .await
            .map_err(status)?;
        tracing::info!(topic = %name, "deleted topic through the admin API");
        Ok(Response::new(DeleteTopicResponse {
            topic_id: id.to_string(),
        }))
    }

    async fn get_broker_status(
        &self,
        _req: Request<GetBrokerStatusRequest>,
    ) -> Result<Response<BrokerStatus>, Status> {
        let b = self.broker()?;
        let md = b.metadata.current();
        let mut led = 0;
        let mut under = 0;
        for (leader, urp) in under_replicated(&md) {
            if leader == b.node_id {
                led += 1;
                under += i32::from(urp);
            }
        }
        let partitions = b.replicas.all_partitions();
        let mut dirs: BTreeMap<std::path::PathBuf, (i64, i32)> = b
            .replicas
            .log_dirs()
            .iter()
            .map(|d| (d.clone(), (0, 0)))
            .collect();
        let mut offline = 0;
        for p in &partitions {
            offline += i32::from(p.is_offline());
            let (_, _, size, _) = p.gauges();
            let e = dirs.entry(p.log_root.clone()).or_default();
            e.0 += size as i64;
            e.1 += 1;
        }
        Ok(Response::new(BrokerStatus {
            broker_id: b.node_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            cluster_id: b.cluster_id.clone(),
            rack: b.config.rack.clone().unwrap_or_default(),
            ready: b.is_ready(),
            partitions_hosted: partitions.len() as i32,
            partitions_led: led,
            under_replicated_partitions: under,
            offline_partitions: offline,
            log_dirs: dirs
                .into_iter()
                .map(|(path, (size_bytes, partitions))| LogDirStatus {
                    path: path.display().to_string(),
                    size_bytes,
                    partitions,
                })
                .collect(),
            uptime_seconds: b.started.elapsed().as_secs() as i64,
        }))
    }

    async fn get_cluster_status(
        &self,
        _req: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let broker = self.broker()?;
        let md = broker.metadata.current();
        let mut status = ClusterStatus {
            cluster_id: md.cluster_id.clone(),
            controller_id: broker.controller_id(),
            topics: md.topics.len() as i32,
            ..Default::default()
        };
        // Per broker: (replicas assigned, including ones being added; partitions led).
        let mut hosted: BTreeMap<i32, (i32, i32)> = BTreeMap::new();
        for t in md.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let r = || PartitionRef {
                    topic: t.name.clone(),
                    partition: i as i32,
                };
                let rf = p.target_replicas().len();
                status.partitions += 1;
                if p.leader < 0 {
                    status.offline.push(r());
                } else {
                    hosted.entry(p.leader).or_default().1 += 1;
                }
                if p.isr.len() < rf {
                    status.under_replicated.push(r());
                }
                if p.is_reassigning() {
                    status.reassigning_partitions += 1;
                }
                if rf as i32 >= status.max_replication_factor {
                    status.max_replication_factor = rf as i32;
                    status.max_replication_factor_topic = t.name.clone();
                }
                for b in p
                    .replicas
                    .iter()
                    .chain(p.adding.iter().filter(|a| !p.replicas.contains(a)))
                {
                    hosted.entry(*b).or_default().0 += 1;
                }
            }
        }
        status.under_replicated_partitions = status.under_replicated.len() as i32;
        status.offline_partitions = status.offline.len() as i32;
        status.brokers = md
            .brokers
            .values()
            .map(|b| BrokerDescription {
                broker_id: b.id,
                rack: b.rack.clone().unwrap_or_default(),
                endpoints: b
                    .endpoints
                    .iter()
                    .map(|e| Endpoint {
                        listener: e.listener.clone(),
                        host: e.host.clone(),
                        port: i32::from(e.port),
                    })
                    .collect(),
                fenced: b.fenced,
                replicas: hosted.get(&b.id).map_or(0, |h| h.0),
                leaders: hosted.get(&b.id).map_or(0, |h| h.1),
            })
            .collect();
        status.quorum = broker.quorum.as_ref().map(|q| {
            let (leader, voters, learners, applied) = q.status();
            QuorumStatus {
                leader_id: leader.unwrap_or(-1),
                voters,
                learners,
                applied_index: applied,
            }
        });
        Ok(Response::new(status))
    }

    async fn rebalance(
        &self,
        req: Request<RebalanceRequest>,
    ) -> Result<Response<RebalancePlan>, Status> {
        let r = req.into_inner();
        let broker = self.broker()?;
        plan_and_run(
            broker,
            &r.exclude_brokers,
            r.dry_run,
            r.throttle_bytes_per_second,
        )
        .await
        .map(Response::new)
    }

    async fn drain_broker(
        &self,
        req: Request<DrainBrokerRequest>,
    ) -> Result<Response<RebalancePlan>, Status> {
        let r = req.into_inner();
        let broker = self.broker()?;
        if !broker.metadata.current().brokers.contains_key(&r.broker_id) {
            return Err(Status::not_found(format!(
                "BROKER_NOT_AVAILABLE: broker {} is not registered",
                r.broker_id
            )));
        }
        plan_and_run(
            broker,
            &[r.broker_id],
            r.dry_run,
            r.throttle_bytes_per_second,
        )
        .await
        .map(Response::new)
    }

    async fn get_rebalance_progress(
        &self,
        _req: Request<GetRebalanceProgressRequest>,
    ) -> Result<Response<RebalanceProgress>, Status> {
        Ok(Response::new(progress(&self.broker()?.metadata.current())))
    }

    async fn cancel_rebalance(
        &self,
        _req: Request<CancelRebalanceRequest>,
    ) -> Result<Response<RebalanceProgress>, Status> {
        let broker = self.broker()?;
        crate::rebalance::cancel_all(broker)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(progress(&broker.metadata.current())))
    }

    async fn set_quorum_voters(
        &self,
        req: Request<SetQuorumVotersRequest>,
    ) -> Result<Response<QuorumStatus>, Status> {
        let broker = self.broker()?;
        let quorum = broker
            .quorum
            .as_ref()
            .ok_or_else(|| Status::unavailable("no metadata quorum"))?;
        let voters = req.into_inner().voters;
        if quorum.is_leader() {
            quorum
                .set_voters(&voters)
                .await
                .map_err(|e| Status::failed_precondition(format!("INVALID_REQUEST: {e}")))?;
        } else {
            let addr = quorum.leader_internal_addr().ok_or_else(|| {
                Status::unavailable("NOT_CONTROLLER: no metadata quorum leader is known")
            })?;
            let channel = crate::security::internal::endpoint(&addr)
                .map_err(Status::unavailable)?
                .connect()
                .await
                .map_err(|e| Status::unavailable(format!("cannot reach the quorum leader: {e}")))?;
            let mut leader = sluice_api::admin::admin_client::AdminClient::new(channel);
            // The leader's answer: this broker's own view may not have caught up yet.
            let status = leader
                .set_quorum_voters(SetQuorumVotersRequest { voters })
                .await?
                .into_inner();
            return Ok(Response::new(status));
        }
        let (leader, voters, learners, applied) = quorum.status();
        Ok(Response::new(QuorumStatus {
            leader_id: leader.unwrap_or(-1),
            voters,
            learners,
            applied_index: applied,
        }))
    }

    async fn unregister_broker(
        &self,
        req: Request<UnregisterBrokerRequest>,
    ) -> Result<Response<UnregisterBrokerResponse>, Status> {
        let id = req.into_inner().broker_id;
        let broker = self.broker()?;
        if let Some(q) = &broker.quorum
            && q.status().1.contains(&id)
        {
            return Err(Status::failed_precondition(format!(
                "INVALID_REQUEST: broker {id} is a metadata quorum voter; change the voters first (SetQuorumVoters)"
            )));
        }
        match broker
            .metadata
            .submit(crate::metadata::MetadataCommand::UnregisterBroker { id })
            .await
        {
            Ok(_) => {
                tracing::info!(broker = id, "unregistered broker through the admin API");
                Ok(Response::new(UnregisterBrokerResponse {}))
            }
            Err(crate::metadata::MetadataError::UnknownBroker(_)) => Err(Status::not_found(
                format!("BROKER_NOT_AVAILABLE: broker {id} is not registered"),
            )),
            Err(e @ crate::metadata::MetadataError::BrokerInUse(_)) => {
                Err(Status::failed_precondition(format!("INVALID_REQUEST: {e}")))
            }
            Err(e) => Err(status(e.into())),
        }
    }

    async fn get_restart_safety(
        &self,
        req: Request<GetRestartSafetyRequest>,
    ) -> Result<Response<RestartSafety>, Status> {
        let id = req.into_inner().broker_id;
        let broker = self.broker()?;
        let md = broker.metadata.current();
        let mut out = RestartSafety::default();
        for t in md.topics.values() {
            let min_isr = broker.replicas.log_config_for(&md, t).min_insync_replicas;
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.isr.contains(&id) {
                    continue;
                }
                if p.target_replicas().len() as i32 <= min_isr {
                    out.unavoidable.push(PartitionRef {
                        topic: t.name.clone(),
                        partition: i as i32,
                    });
                } else if (p.isr.len() as i32) - 1 < min_isr {
                    out.blocking.push(PartitionRisk {
                        topic: t.name.clone(),
                        partition: i as i32,
                        isr: p.isr.clone(),
                        min_insync_replicas: min_isr,
                    });
                }
            }
        }
        out.safe = out.blocking.is_empty();
        Ok(Response::new(out))
    }

    async fn alter_cluster_configs(
        &self,
        req: Request<AlterClusterConfigsRequest>,
    ) -> Result<Response<ClusterConfigs>, Status> {
        let r = req.into_inner();
        let set = set_unless_removed(r.set, &r.remove)?;
        let configs =
            configs::alter_cluster_defaults(self.broker()?, set, &r.remove, r.validate_only)
                .await
                .map_err(status)?;
        if !r.validate_only {
            tracing::info!(configs = ?configs, "altered cluster-wide broker configs through the admin API");
        }
        Ok(Response::new(ClusterConfigs { configs }))
    }

    async fn upsert_user(
        &self,
        req: Request<sluice_api::admin::UpsertUserRequest>,
    ) -> Result<Response<sluice_api::admin::UserDescription>, Status> {
        let broker = self.broker()?;
        sec::upsert_user(broker, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_user(
        &self,
        req: Request<sluice_api::admin::DeleteUserRequest>,
    ) -> Result<Response<sluice_api::admin::DeleteUserResponse>, Status> {
        let broker = self.broker()?;
        sec::delete_user(broker, &req.into_inner().name).await?;
        Ok(Response::new(sluice_api::admin::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        _req: Request<sluice_api::admin::ListUsersRequest>,
    ) -> Result<Response<sluice_api::admin::ListUsersResponse>, Status> {
        let md = self.broker()?.metadata.current();
        let users = md.scram.keys().map(|u| sec::user(&md, u)).collect();
        Ok(Response::new(sluice_api::admin::ListUsersResponse {
            users,
        }))
    }

    async fn create_acls(
        &self,
        req: Request<sluice_api::admin::CreateAclsRequest>,
    ) -> Result<Response<sluice_api::admin::AclList>, Status> {
        let broker = self.broker()?;
        sec::create_acls(broker, &req.into_inner().acls)
            .await
            .map(Response::new)
    }

    async fn delete_acls(
        &self,
        req: Request<sluice_api::admin::AclFilter>,
    ) -> Result<Response<sluice_api::admin::AclList>, Status> {
        let broker = self.broker()?;
        let f = sec::filter(&req.into_inner())?;
        sec::delete_acls(broker, &f).await.map(Response::new)
    }

    async fn list_acls(
        &self,
        req: Request<sluice_api::admin::AclFilter>,
    ) -> Result<Response<sluice_api::admin::AclList>, Status> {
        let broker = self.broker()?;
        let f = sec::filter(&req.into_inner())?;
        Ok(Response::new(sec::list_acls(
            &broker.metadata.current(),
            &f,
        )))
    }

    async fn replace_principal_acls(
        &self,
        req: Request<sluice_api::admin::ReplacePrincipalAclsRequest>,
    ) -> Result<Response<sluice_api::admin::AclList>, Status> {
        let broker = self.broker()?;
        sec::replace_principal_acls(broker, &req.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_quotas(
        &self,
        req: Request<sluice_api::admin::SetQuotasRequest>,
    ) -> Result<Response<sluice_api::admin::QuotaList>, Status> {
        let broker = self.broker()?;
        sec::set_quotas(broker, &req.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_quotas(
        &self,
        _req: Request<sluice_api::admin::ListQuotasRequest>,
    ) -> Result<Response<sluice_api::admin::QuotaList>, Status> {
        let broker = self.broker()?;
        Ok(Response::new(sec::list_quotas(&broker.metadata.current())))
    }

    async fn list_partition_sizes(
        &self,
        _req: Request<ListPartitionSizesRequest>,
    ) -> Result<Response<PartitionSizes>, Status> {
        let partitions = crate::rebalance::local_leader_sizes(self.broker()?)
            .into_iter()
            .map(|(topic, partition, size)| PartitionSize {
                topic,
                partition,
                size_bytes: size as i64,
            })
            .collect();
        Ok(Response::new(PartitionSizes { partitions }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_error_names() {
        assert_eq!(
            kafka_error_name(ResponseError::InvalidPartitions.code()),
            "INVALID_PARTITIONS"
        );
        let s = status(TopicError::new(
            ResponseError::TopicAlreadyExists,
            "Topic 'a' already exists.",
        ));
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert_eq!(
            s.message(),
            "TOPIC_ALREADY_EXISTS: Topic 'a' already exists."
        );
    }
}
