//! The Raft-replicated metadata store: every broker runs the state machine; the voters
//! of `controller.quorum.voters` elect a leader (the controller), other brokers follow as
//! learners. Commands submitted anywhere are forwarded to the leader.

pub mod log_store;
pub mod network;
pub mod service;
pub mod state_machine;
pub mod types;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_api::quorum::quorum_client::QuorumClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

use self::log_store::LogStore;
use self::network::{Network, connect, payload};
use self::state_machine::StateMachine;
use self::types::{NodeId, Raft};
use super::image::{ClusterMetadata, MetadataCommand, MetadataError};
use super::store::MetadataStore;

/// How long a command may take to commit (including finding a leader) before the caller
/// gets `Unavailable`.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// One attempt at the leader; longer means the leader lost its quorum.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("cannot open the metadata log in {path}: {source}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] state_machine::SnapshotLoadError),
    #[error("invalid metadata quorum configuration: {0}")]
    Config(String),
    #[error("metadata quorum failed to start: {0}")]
    Start(String),
}

#[derive(Debug, Clone)]
pub struct QuorumOptions {
    pub node_id: i32,
    pub cluster_id: String,
    /// `(id, internal address)`; empty: this broker alone.
    pub voters: Vec<(i32, String)>,
    /// The internal address other brokers reach this one at.
    pub own_addr: String,
    pub dir: PathBuf,
    pub election_timeout_ms: u64,
    pub snapshot_interval_entries: u64,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    /// 0 disables the automatic preferred leader election.
    pub leader_rebalance_interval_ms: u64,
}

/// Answer of the leader to a forwarded command.
#[derive(Debug, Serialize, Deserialize)]
pub enum SubmitReply {
    Committed { index: u64 },
    Refused(MetadataError),
    NotLeader { leader: Option<String> },
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum JoinReply {
    Joined,
    NotLeader { leader: Option<String> },
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub id: i32,
    pub incarnation: Uuid,
    /// Caught up and serving: the controller may unfence it.
    pub ready: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum HeartbeatReply {
    Ok,
    NotLeader { leader: Option<String> },
}

/// The calls one broker makes to another's quorum service outside Raft itself.
#[derive(Debug, Clone, Copy)]
enum PeerRpc {
    Submit,
    Join,
    Heartbeat,
}

/// Controller-side liveness: when each broker was last heard from.
#[derive(Debug, Default)]
struct Liveness {
    leader_since: Option<Instant>,
    last_leader_rebalance: Option<Instant>,
    last_seen: HashMap<i32, Instant>,
    unfencing: HashSet<i32>,
}

pub struct Quorum {
    raft: Raft,
    opts: QuorumOptions,
    /// This process's incarnation, registered with the broker.
    pub incarnation: Uuid,
    images: Arc<watch::Sender<Arc<ClusterMetadata>>>,
    peers: Mutex<HashMap<String, QuorumClient<Channel>>>,
    liveness: Mutex<Liveness>,
    /// Set when serving: heartbeats then ask to be unfenced.
    ready: AtomicBool,
    /// Set on controlled shutdown: heartbeats stop asking to be unfenced.
    leaving: AtomicBool,
    /// Wakes the heartbeat loop early (readiness changed).
    beat_now: tokio::sync::Notify,
    /// When the controller last answered a heartbeat, in ms since `started` (read on
    /// every request, so an atomic rather than a lock).
    last_heartbeat_ok_ms: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node_id", &self.opts.node_id)
            .finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    serde_json::from_slice(json).map_err(|e| format!("undecodable quorum message: {e}"))
}

impl Quorum {
    /// Opens the local log and state machine and starts Raft. The lowest-numbered voter,
    /// if it has never been part of a quorum, initialises it with the configured voters;
    /// the others receive that from it. Brokers that are not members (learners, and
    /// voters added to the configuration after the quorum formed) join once `run` is
    /// started: a second quorum can never form from a changed voter list.
    pub async fn start(opts: QuorumOptions) -> Result<Arc<Self>, QuorumError> {
        let mut opts = opts;
        if opts.voters.is_empty() {
            opts.voters = vec![(opts.node_id, opts.own_addr.clone())];
        }
        let log = LogStore::open(&opts.dir).map_err(|source| QuorumError::Log {
            path: opts.dir.display().to_string(),
            source,
        })?;
        let sm = StateMachine::open(&opts.dir, &opts.cluster_id)?;
        let pristine = log.is_pristine() && !sm.has_snapshot();
        let images = sm.images();
        let image_cluster = images.borrow().cluster_id.clone();
        if image_cluster != opts.cluster_id {
            return Err(QuorumError::Config(format!(
                "the metadata in {} belongs to cluster {image_cluster}, this broker to {}",
                opts.dir.display(),
                opts.cluster_id
            )));
        }
        let election = opts.election_timeout_ms;
        let config = openraft::Config {
            cluster_name: opts.cluster_id.clone(),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            heartbeat_interval: (election / 5).max(10),
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_interval_entries),
            // Entries kept after a snapshot for followers slightly behind; anyone further
            // behind gets the snapshot.
            max_in_snapshot_log_to_keep: opts.snapshot_interval_entries.min(100),
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;
        let raft = Raft::new(
            opts.node_id as NodeId,
            Arc::new(config),
            Network {
                cluster_id: opts.cluster_id.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| QuorumError::Start(e.to_string()))?;
        let first_voter = opts.voters.iter().map(|(id, _)| *id).min() == Some(opts.node_id);
        if first_voter && pristine {
            let members: BTreeMap<NodeId, BasicNode> = opts
                .voters
                .iter()
                .map(|(id, addr)| (*id as NodeId, BasicNode::new(addr)))
                .collect();
            tracing::info!(voters = ?opts.voters, "initialising the metadata quorum");
            match raft.initialize(members).await {
                Ok(()) => {}
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(QuorumError::Start(e.to_string())),
            }
        }
        Ok(Arc::new(Self {
            raft,
            opts,
            incarnation: Uuid::new_v4(),
            images,
            peers: Mutex::new(HashMap::new()),
            liveness: Mutex::new(Liveness::default()),
            ready: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            beat_now: tokio::sync::Notify::new(),
            last_heartbeat_ok_ms: AtomicU64::new(0),
            started: Instant::now(),
        }))
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn cluster_id(&self) -> &str {
        &self.opts.cluster_id
    }

    pub fn node_id(&self) -> i32 {
        self.opts.node_id
    }

    /// The quorum leader (the controller), if one is known.
    pub fn leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .map(|l| l as i32)
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.opts.node_id as NodeId)
    }

    fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// Quorum status for the admin API and metrics: (leader, voters, learners, applied index).
    pub fn status(&self) -> (Option<i32>, Vec<i32>, Vec<i32>, u64) {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().map(|v| v as i32).collect();
        let learners = membership.learner_ids().map(|v| v as i32).collect();
        (
            m.current_leader.map(|l| l as i32),
            voters,
            learners,
            m.last_applied.map(|l| l.index).unwrap_or(0),
        )
    }

    /// The leader's internal address (for forwarding admin calls to it).
    pub fn leader_internal_addr(&self) -> Option<String> {
        self.leader_addr()
    }

    /// On the leader: replaces the voters (joint consensus; removed voters stay
    /// learners). Every new voter must already be a member.
    pub async fn set_voters(&self, voters: &[i32]) -> Result<(), String> {
        if voters.is_empty() || voters.iter().any(|v| *v < 0) {
            return Err("the voter set must name at least one broker id".into());
        }
        let members: Vec<i32> = self.member_addrs().into_iter().map(|(id, _)| id).collect();
        if let Some(v) = voters.iter().find(|v| !members.contains(v)) {
            return Err(format!(
                "broker {v} is not a member of the metadata quorum (is it running?)"
            ));
        }
        let set: std::collections::BTreeSet<NodeId> = voters.iter().map(|v| *v as NodeId).collect();
        tracing::info!(voters = ?set, "changing the metadata quorum's voters");
        match tokio::time::timeout(
            SUBMIT_TIMEOUT,
            self.raft
                .change_membership(openraft::ChangeMembers::ReplaceAllVoters(set), true),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the voter change did not commit in time".into()),
        }
    }

    /// `(broker id, internal address)` of every quorum member (all brokers).
    pub fn member_addrs(&self) -> Vec<(i32, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id as i32, n.addr.clone()))
            .collect()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        self.beat_now.notify_one();
    }

    /// No heartbeat reached the controller for a session timeout: the controller has
    /// fenced this broker (or will), and its metadata may be stale. It then stops acting
    /// as a leader (produce and Metadata), so clients find the real leaders elsewhere
    /// instead of waiting on a leader nobody follows.
    pub fn out_of_contact(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.since_started_ms()
                > self.last_heartbeat_ok_ms.load(Ordering::Acquire) + self.opts.session_timeout_ms
    }

    fn since_started_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn heartbeat_answered(&self) {
        self.last_heartbeat_ok_ms
            .store(self.since_started_ms(), Ordering::Release);
    }

    /// Waits until the committed metadata shows this broker unfenced; returns the offset
    /// of that image, `None` on timeout.
    pub async fn wait_unfenced(&self, timeout: Duration) -> Option<u64> {
        let id = self.opts.node_id;
        let mut rx = self.subscribe();
        let done = rx.wait_for(|md| md.brokers.get(&id).is_some_and(|b| !b.fenced));
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(md)) => Some(md.offset),
            _ => None,
        }
    }

    fn client(&self, addr: &str) -> Result<QuorumClient<Channel>, String> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let c = connect(addr).map_err(|e| format!("bad quorum address {addr}: {e}"))?;
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Commits `cmd` if this node leads the quorum.
    pub async fn submit_here(&self, cmd: MetadataCommand) -> SubmitReply {
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => match resp.data.0 {
                Ok(()) => SubmitReply::Committed {
                    index: resp.log_id.index,
                },
                Err(e) => SubmitReply::Refused(e),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                SubmitReply::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                }
            }
            Ok(Err(e)) => SubmitReply::Failed(e.to_string()),
            Err(_) => SubmitReply::Failed(format!(
                "not committed within {} s: the quorum leader may have lost its majority",
                COMMIT_TIMEOUT.as_secs()
            )),
        }
    }

    async fn call(
        &self,
        addr: &str,
        rpc: PeerRpc,
        body: sluice_api::quorum::Payload,
    ) -> Result<Vec<u8>, String> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(body);
        let reply = match rpc {
            PeerRpc::Submit => {
                req.set_timeout(COMMIT_TIMEOUT + Duration::from_secs(1));
                client.submit(req).await
            }
            PeerRpc::Join => {
                req.set_timeout(COMMIT_TIMEOUT + Duration::from_secs(1));
                client.join(req).await
            }
            PeerRpc::Heartbeat => {
                // A heartbeat that takes a session timeout has failed anyway.
                req.set_timeout(Duration::from_millis(self.opts.session_timeout_ms));
                client.heartbeat(req).await
            }
        };
        reply
            .map(|r| r.into_inner().json)
            .map_err(|s| format!("{rpc:?} at {addr}: {}", s.message()))
    }

    async fn forward_submit(
        &self,
        addr: &str,
        cmd: &MetadataCommand,
    ) -> Result<SubmitReply, String> {
        let body = payload(&self.opts.cluster_id, cmd).map_err(|e| e.to_string())?;
        decode(&self.call(addr, PeerRpc::Submit, body).await?)
    }

    async fn wait_applied(&self, index: u64) {
        if let Err(e) = self
            .raft
            .wait(Some(COMMIT_TIMEOUT))
            .applied_index_at_least(Some(index), "forwarded metadata command")
            .await
        {
            tracing::warn!(index, error = %e, "committed metadata command not applied locally in time");
        }
    }

    async fn submit_anywhere(&self, cmd: MetadataCommand) -> Result<(), MetadataError> {
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        let mut last_error;
        loop {
            match self.submit_here(cmd.clone()).await {
                SubmitReply::Committed { .. } => return Ok(()),
                SubmitReply::Refused(e) => return Err(e),
                SubmitReply::Failed(e) => last_error = e,
                SubmitReply::NotLeader { leader: None } => {
                    last_error = "no metadata quorum leader is elected".to_string()
                }
                SubmitReply::NotLeader { leader: Some(addr) } => {
                    match self.forward_submit(&addr, &cmd).await {
                        Ok(SubmitReply::Committed { index }) => {
                            self.wait_applied(index).await;
                            return Ok(());
                        }
                        Ok(SubmitReply::Refused(e)) => return Err(e),
                        Ok(SubmitReply::Failed(e)) => last_error = e,
                        Ok(SubmitReply::NotLeader { .. }) => {
                            last_error = format!("{addr} is no longer the quorum leader")
                        }
                        Err(e) => last_error = e,
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::Unavailable(last_error));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Leader side of Join: adds the broker as a learner.
    pub async fn handle_join(&self, req: JoinRequest) -> JoinReply {
        if !self.is_leader() {
            return JoinReply::NotLeader {
                leader: self.leader_addr(),
            };
        }
        let known = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .get_node(&req.id)
                .is_some_and(|n| n.addr == req.addr)
        };
        if known {
            return JoinReply::Joined;
        }
        tracing::info!(broker = req.id, addr = %req.addr, "adding broker to the metadata quorum as a learner");
        match self
            .raft
            .add_learner(req.id, BasicNode::new(&req.addr), false)
            .await
        {
            Ok(_) => JoinReply::Joined,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                JoinReply::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                }
            }
            Err(e) => JoinReply::Failed(e.to_string()),
        }
    }

    fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&(self.opts.node_id as NodeId))
            .is_some()
    }

    /// A learner asks the voters (forwarded to the leader) to add it.
    async fn join(&self) -> Result<(), String> {
        let req = JoinRequest {
            id: self.opts.node_id as NodeId,
            addr: self.opts.own_addr.clone(),
        };
        let body = payload(&self.opts.cluster_id, &req).map_err(|e| e.to_string())?;
        let mut last = String::from("no voter answered");
        let mut targets: Vec<String> = self.opts.voters.iter().map(|(_, a)| a.clone()).collect();
        while let Some(addr) = targets.pop() {
            match self
                .call(&addr, PeerRpc::Join, body.clone())
                .await
                .and_then(|b| decode(&b))
            {
                Ok(JoinReply::Joined) => return Ok(()),
                Ok(JoinReply::NotLeader { leader: Some(l) }) if !targets.contains(&l) => {
                    targets.push(l)
                }
                Ok(JoinReply::NotLeader { .. }) => last = format!("{addr}: not the leader"),
                Ok(JoinReply::Failed(e)) => last = e,
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Controller side of a heartbeat.
    pub async fn handle_heartbeat(&self, req: HeartbeatRequest) -> HeartbeatReply {
        if !self.is_leader() {
            return HeartbeatReply::NotLeader {
                leader: self.leader_addr(),
            };
        }
        self.liveness
            .lock()
            .last_seen
            .insert(req.id, Instant::now());
        let unfence = req.ready
            && self
                .current()
                .brokers
                .get(&req.id)
                .is_some_and(|b| b.fenced && b.incarnation == req.incarnation)
            && self.liveness.lock().unfencing.insert(req.id);
        if unfence {
            tracing::info!(
                broker = req.id,
                "broker is caught up and heartbeating; unfencing it"
            );
            let r = self
                .submit_here(MetadataCommand::UnfenceBroker { id: req.id })
                .await;
            self.liveness.lock().unfencing.remove(&req.id);
            if !matches!(r, SubmitReply::Committed { .. }) {
                tracing::warn!(broker = req.id, reply = ?r, "could not unfence broker");
            }
        }
        HeartbeatReply::Ok
    }

    async fn heartbeat(&self) -> Result<(), String> {
        let req = HeartbeatRequest {
            id: self.opts.node_id,
            incarnation: self.incarnation,
            ready: self.ready.load(Ordering::Acquire) && !self.leaving.load(Ordering::Acquire),
        };
        if self.is_leader() {
            self.handle_heartbeat(req).await;
            // A leader cut off from its voters is not really in charge any more.
            let (alone, acked) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (
                    m.membership_config.membership().voter_ids().count() <= 1,
                    m.millis_since_quorum_ack,
                )
            };
            if alone || acked.is_some_and(|ms| ms < self.opts.session_timeout_ms) {
                self.heartbeat_answered();
                return Ok(());
            }
            return Err("this controller has not heard from a majority of voters".into());
        }
        let addr = self
            .leader_addr()
            .ok_or_else(|| "no metadata quorum leader is known".to_string())?;
        let body = payload(&self.opts.cluster_id, &req).map_err(|e| e.to_string())?;
        match decode(&self.call(&addr, PeerRpc::Heartbeat, body).await?)? {
            HeartbeatReply::Ok => {
                self.heartbeat_answered();
                Ok(())
            }
            HeartbeatReply::NotLeader { .. } => Err(format!("{addr} is not the controller")),
        }
    }

    /// The controller fences brokers whose heartbeats stopped.
    async fn check_sessions(&self) {
        if !self.is_leader() {
            let mut l = self.liveness.lock();
            l.leader_since = None;
            l.last_seen.clear();
            return;
        }
        let now = Instant::now();
        let timeout = Duration::from_millis(self.opts.session_timeout_ms);
        let expired: Vec<i32> = {
            let mut l = self.liveness.lock();
            // A new controller gives every broker a full session before fencing it.
            let since = *l.leader_since.get_or_insert(now);
            self.current()
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| {
                    let seen = l.last_seen.get(&b.id).copied().unwrap_or(since).max(since);
                    now.duration_since(seen) > timeout
                })
                .map(|b| b.id)
                .collect()
        };
        self.rebalance_leaders().await;
        for id in expired {
            tracing::warn!(
                broker = id,
                session_timeout_ms = self.opts.session_timeout_ms,
                "broker missed its heartbeats; fencing it and electing new leaders for its partitions"
            );
            let r = self.submit_here(MetadataCommand::FenceBroker { id }).await;
            if !matches!(r, SubmitReply::Committed { .. }) {
                tracing::warn!(broker = id, reply = ?r, "could not fence broker");
            }
        }
    }

    /// Preferred leader election for partitions whose first replica is in sync, active
    /// and not leading (Kafka's `auto.leader.rebalance.enable`).
    async fn rebalance_leaders(&self) {
        let interval = Duration::from_millis(self.opts.leader_rebalance_interval_ms);
        if interval.is_zero() {
            return;
        }
        {
            let mut l = self.liveness.lock();
            let last = *l.last_leader_rebalance.get_or_insert_with(Instant::now);
            if last.elapsed() < interval {
                return;
            }
            l.last_leader_rebalance = Some(Instant::now());
        }
        let md = self.current();
        let partitions: Vec<(String, i32)> = md
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().enumerate().filter_map(|(i, p)| {
                    let preferred = *p.replicas.first()?;
                    (p.leader != preferred && p.isr.contains(&preferred) && md.is_active(preferred))
                        .then(|| (t.name.clone(), i as i32))
                })
            })
            .collect();
        if partitions.is_empty() {
            return;
        }
        tracing::info!(
            partitions = partitions.len(),
            "moving leadership back to preferred replicas"
        );
        let r = self
            .submit_here(MetadataCommand::ElectPreferredLeaders { partitions })
            .await;
        if !matches!(r, SubmitReply::Committed { .. }) {
            tracing::warn!(reply = ?r, "preferred leader election failed");
        }
    }

    /// Joins as a learner if needed, then heartbeats and (while leading) checks the
    /// sessions of the other brokers, until `shutdown`. Fails if Raft itself stopped: the
    /// broker can then no longer follow the cluster and must restart.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), String> {
        let hb = Duration::from_millis(self.opts.heartbeat_interval_ms);
        let mut joined = self.is_member();
        let mut last_warn: Option<Instant> = None;
        let mut tick = tokio::time::interval(hb.min(Duration::from_millis(500)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat: Option<Instant> = None;
        let mut known_leader: Option<Option<i32>> = None;
        let mut was_cut_off = false;
        loop {
            let woken = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => false,
                _ = self.beat_now.notified() => true,
            };
            if let Err(e) = &self.raft.metrics().borrow().running_state {
                return Err(format!("the metadata quorum (Raft) stopped: {e}"));
            }
            let cut_off = self.out_of_contact();
            if cut_off != was_cut_off {
                if cut_off {
                    tracing::warn!(
                        session_timeout_ms = self.opts.session_timeout_ms,
                        "no heartbeat reached the controller for a session timeout; refusing writes as leader until it does"
                    );
                } else {
                    tracing::info!("in contact with the controller again");
                }
                was_cut_off = cut_off;
            }
            let leader = self.leader();
            if known_leader != Some(leader) {
                let term = self.raft.metrics().borrow().current_term;
                match leader {
                    Some(l) => tracing::info!(
                        controller = l,
                        term,
                        "metadata quorum leader (controller) elected"
                    ),
                    None if known_leader.is_some() => {
                        tracing::warn!(term, "metadata quorum has no leader")
                    }
                    None => {}
                }
                known_leader = Some(leader);
            }
            if !joined {
                match self.join().await {
                    Ok(()) => {
                        tracing::info!("joined the metadata quorum as a learner");
                        joined = true;
                    }
                    Err(e) => {
                        if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            tracing::warn!(error = %e, "cannot join the metadata quorum yet; retrying");
                            last_warn = Some(Instant::now());
                        }
                        continue;
                    }
                }
            }
            if woken || last_beat.is_none_or(|t| t.elapsed() >= hb) {
                last_beat = Some(Instant::now());
                if let Err(e) = self.heartbeat().await
                    && last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                {
                    tracing::warn!(error = %e, "heartbeat to the controller failed");
                    last_warn = Some(Instant::now());
                }
            }
            self.check_sessions().await;
        }
    }

    /// Controlled shutdown: this broker is fenced, so its leaderships move to other
    /// in-sync replicas before it stops serving.
    pub async fn leave(&self) -> Result<(), MetadataError> {
        self.leaving.store(true, Ordering::Release);
        self.submit_anywhere(MetadataCommand::FenceBroker {
            id: self.opts.node_id,
        })
        .await
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }
}

impl MetadataStore for Quorum {
    fn current(&self) -> Arc<ClusterMetadata> {
        self.images.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.images.subscribe()
    }

    fn submit(
        &self,
        cmd: MetadataCommand,
    ) -> BoxFuture<'_, Result<Arc<ClusterMetadata>, MetadataError>> {
        Box::pin(async move {
            self.submit_anywhere(cmd).await?;
            Ok(self.current())
        })
    }
}
