//! One consumer group under the classic protocol: members, generations and the rebalance
//! state machine (Empty -> PreparingRebalance -> CompletingRebalance -> Stable), as
//! Kafka's GroupCoordinator runs it. Pure logic over explicit time: the coordinator owns
//! locking, persistence and timers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use tokio::sync::oneshot;

use super::records::{GroupValue, MemberValue, OffsetValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka's DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// Only for the leader: (member id, instance id, metadata of the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: i16, member_id: &str) -> Self {
        Self {
            error: code,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: i16) -> Self {
        Self {
            error: code,
            ..Default::default()
        }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat: Instant,
    pub awaiting_join: Option<oneshot::Sender<JoinResult>>,
    pub awaiting_sync: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED and its id (KIP-394).
    pub require_known_member_id: bool,
}

/// What the coordinator must do after a JoinGroup.
#[derive(Debug)]
pub enum JoinOutcome {
    Respond(JoinResult),
    Wait(oneshot::Receiver<JoinResult>),
}

#[derive(Debug)]
pub enum SyncOutcome {
    Respond(SyncResult),
    Wait(oneshot::Receiver<SyncResult>),
    /// The leader's assignment completed the rebalance: persist the group, then answer.
    Persist(oneshot::Receiver<SyncResult>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Limits {
    pub initial_rebalance_delay: Duration,
    pub max_size: usize,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first member becomes leader.
    pub members: IndexMap<String, Member>,
    /// `group.instance.id` -> member id of static members.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or time out.
    pub pending_members: HashMap<String, Instant>,
    pub rebalance_deadline: Option<Instant>,
    /// A new group waits `group.initial.rebalance.delay.ms` for more members.
    pub initial_delay_until: Option<Instant>,
    pub sync_deadline: Option<Instant>,
    pub offsets: HashMap<(String, i32), OffsetValue>,
    /// When the group last changed state (ms since epoch); offsets of an empty group
    /// expire counting from when it became empty.
    pub state_timestamp: i64,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            sync_deadline: None,
            offsets: HashMap::new(),
            state_timestamp: now_ms,
        }
    }

    fn set_state(&mut self, s: GroupState, now_ms: i64) {
        if self.state != s {
            self.state = s;
            self.state_timestamp = now_ms;
        }
    }

    /// Whether `protocol_type` and `protocols` fit this group: same type, and at least
    /// one protocol every member supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60))
    }

    /// The protocol most members prefer among those all support.
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: IndexMap<&String, usize> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| votes.contains_key(n))
                && let Some(v) = votes.get_mut(n)
            {
                *v += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(n, _)| n.clone())
    }

    fn current_join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(protocol.as_deref().unwrap_or("")),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader,
            member_id: member_id.to_string(),
            skip_assignment: false,
            members,
        }
    }

    /// Moves to PreparingRebalance (from Empty, Stable or CompletingRebalance).
    pub fn prepare_rebalance(&mut self, now: Instant, now_ms: i64, limits: &Limits, why: &str) {
        if !matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            return;
        }
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(SyncResult::error(code(ResponseError::RebalanceInProgress)));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(),
            reason = why, "preparing to rebalance group");
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.sync_deadline = None;
        let timeout = self.max_rebalance_timeout();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = if was_empty {
            let delay = limits.initial_rebalance_delay.min(timeout);
            (!delay.is_zero()).then(|| now + delay)
        } else {
            None
        };
    }

    /// Handles a JoinGroup.
    pub fn join(
        &mut self,
        p: JoinParams,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) -> JoinOutcome {
        let respond =
            |e: ResponseError, id: &str| JoinOutcome::Respond(JoinResult::error(code(e), id));
        if self.state == GroupState::Dead {
            return respond(ResponseError::CoordinatorNotAvailable, &p.member_id);
        }
        if !self.supports(&p.protocol_type, &p.protocols) {
            return respond(ResponseError::InconsistentGroupProtocol, &p.member_id);
        }
        if p.member_id.is_empty() {
            let new_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = p.instance_id.clone() {
                if let Some(old_id) = self.static_members.get(&instance).cloned() {
                    return self.replace_static_member(&old_id, new_id, p, now, now_ms, limits);
                }
                return self.add_member_and_wait(new_id, p, now, now_ms, limits);
            }
            if p.require_known_member_id {
                if self.members.len() + self.pending_members.len() >= limits.max_size {
                    return respond(ResponseError::GroupMaxSizeReached, "");
                }
                let deadline = now + Duration::from_millis(p.session_timeout_ms.max(0) as u64);
                self.pending_members.insert(new_id.clone(), deadline);
                return respond(ResponseError::MemberIdRequired, &new_id);
            }
            return self.add_member_and_wait(new_id, p, now, now_ms, limits);
        }
        if self.pending_members.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_member_and_wait(id, p, now, now_ms, limits);
        }
        // Fencing first, as Kafka: a zombie that got UNKNOWN_MEMBER_ID would rejoin with
        // an empty id and fence the live instance in turn.
        if let Some(instance) = &p.instance_id
            && self
                .static_members
                .get(instance)
                .is_some_and(|current| *current != p.member_id)
        {
            return respond(ResponseError::FencedInstanceId, &p.member_id);
        }
        if !self.members.contains_key(&p.member_id) {
            return respond(ResponseError::UnknownMemberId, &p.member_id);
        }
        if let Some(instance) = &p.instance_id
            && self.static_members.get(instance) != Some(&p.member_id)
        {
            return respond(ResponseError::FencedInstanceId, &p.member_id);
        }
        let id = p.member_id.clone();
        let unchanged = self
            .members
            .get(&id)
            .is_some_and(|m| m.same_protocols(&p.protocols));
        if let Some(m) = self.members.get_mut(&id) {
            m.protocols = p.protocols.clone();
            m.session_timeout = Duration::from_millis(p.session_timeout_ms.max(0) as u64);
            m.rebalance_timeout = Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64);
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::CompletingRebalance if unchanged => {
                JoinOutcome::Respond(self.current_join_result(&id))
            }
            GroupState::Stable if unchanged && self.leader.as_deref() != Some(id.as_str()) => {
                JoinOutcome::Respond(self.current_join_result(&id))
            }
            _ => {
                self.prepare_rebalance(
                    now,
                    now_ms,
                    limits,
                    "a member rejoined with new metadata or as leader",
                );
                self.park_join(&id, now, now_ms)
            }
        }
    }

    fn park_join(&mut self, id: &str, now: Instant, now_ms: i64) -> JoinOutcome {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            if let Some(old) = m.awaiting_join.replace(tx) {
                let _ = old.send(JoinResult::error(code(ResponseError::UnknownMemberId), id));
            }
            m.last_heartbeat = now;
        }
        self.try_complete_join(now, now_ms);
        JoinOutcome::Wait(rx)
    }

    fn add_member_and_wait(
        &mut self,
        id: String,
        p: JoinParams,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) -> JoinOutcome {
        if self.members.len() >= limits.max_size {
            return JoinOutcome::Respond(JoinResult::error(
                code(ResponseError::GroupMaxSizeReached),
                &id,
            ));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        if let Some(instance) = &p.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout: Duration::from_millis(p.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64),
                protocol_type: p.protocol_type,
                protocols: p.protocols,
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: None,
                awaiting_sync: None,
            },
        );
        self.prepare_rebalance(now, now_ms, limits, "a member joined");
        self.park_join(&id, now, now_ms)
    }

    /// A static member came back with a new member id: it takes over the old member's
    /// place (and assignment); the old id is fenced. With unchanged metadata in a stable
    /// group there is no rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) -> JoinOutcome {
        let Some(mut m) = self.members.shift_remove(old_id) else {
            self.static_members
                .remove(p.instance_id.as_deref().unwrap_or(""));
            return self.add_member_and_wait(new_id, p, now, now_ms, limits);
        };
        let fenced = code(ResponseError::FencedInstanceId);
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(fenced, old_id));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(fenced));
        }
        let unchanged = m.same_protocols(&p.protocols);
        m.id = new_id.clone();
        m.client_id = p.client_id;
        m.client_host = p.client_host;
        m.session_timeout = Duration::from_millis(p.session_timeout_ms.max(0) as u64);
        m.rebalance_timeout = Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64);
        m.protocols = p.protocols;
        m.last_heartbeat = now;
        self.members.insert(new_id.clone(), m);
        if let Some(instance) = p.instance_id {
            self.static_members.insert(instance, new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        tracing::info!(group = %self.id, old_member = old_id, member = %new_id,
            "static member rejoined; the old member id is fenced");
        match self.state {
            GroupState::Stable if unchanged => {
                let mut r = self.current_join_result(&new_id);
                // The leader must not compute a new assignment (KIP-814).
                r.skip_assignment = r.leader == new_id;
                JoinOutcome::Respond(r)
            }
            _ => {
                self.prepare_rebalance(
                    now,
                    now_ms,
                    limits,
                    "a static member rejoined with new metadata",
                );
                self.park_join(&new_id, now, now_ms)
            }
        }
    }

    /// Completes the join phase when every member has rejoined (after the initial delay
    /// of a new group) or the rebalance timeout passed. Returns whether it completed.
    pub fn try_complete_join(&mut self, now: Instant, now_ms: i64) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let all_joined = self.pending_members.is_empty()
            && self.members.values().all(|m| m.awaiting_join.is_some());
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !((all_joined && delay_over) || timed_out) {
            return false;
        }
        // Dynamic members that did not rejoin in time leave the group; static ones stay
        // until their session times out (KIP-345: a restarting instance keeps its place).
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removing it");
            self.remove_member(&id);
        }
        self.pending_members.clear();
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        if self.members.is_empty() {
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return true;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.current_join_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(result);
                }
            }
        }
        tracing::info!(group = %self.id, generation = self.generation,
            protocol = self.protocol.as_deref().unwrap_or("-"), members = self.members.len(),
            leader = self.leader.as_deref().unwrap_or("-"), "group join phase complete");
        true
    }

    pub fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.shift_remove(id)?;
        if let Some(instance) = &m.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(id)
        {
            self.static_members.remove(instance);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(m)
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id
            && let Some(current) = self.static_members.get(instance)
            && current != member_id
        {
            return Err(code(ResponseError::FencedInstanceId));
        }
        if !self.members.contains_key(member_id) {
            return Err(code(ResponseError::UnknownMemberId));
        }
        Ok(())
    }

    /// Handles a SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> SyncOutcome {
        let err = |e: ResponseError| SyncOutcome::Respond(SyncResult::error(code(e)));
        if matches!(self.state, GroupState::Dead | GroupState::Empty) {
            return err(ResponseError::UnknownMemberId);
        }
        if let Err(c) = self.check_member(member_id, instance_id) {
            return SyncOutcome::Respond(SyncResult::error(c));
        }
        if generation != self.generation {
            return err(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::PreparingRebalance => err(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                SyncOutcome::Respond(SyncResult {
                    error: 0,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    assignment,
                })
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = Some(tx);
                    m.last_heartbeat = now;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    return SyncOutcome::Persist(rx);
                }
                SyncOutcome::Wait(rx)
            }
        }
    }

    /// After the leader's assignment is persisted: Stable, every waiting member answered.
    pub fn complete_sync(&mut self, generation: i32, now_ms: i64) {
        if self.generation != generation || self.state != GroupState::CompletingRebalance {
            return;
        }
        self.set_state(GroupState::Stable, now_ms);
        self.sync_deadline = None;
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult {
                    error: 0,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
        tracing::info!(group = %self.id, generation = self.generation, "group is stable");
    }

    /// The group metadata could not be stored: every waiting member is told, and the
    /// group rebalances again.
    pub fn fail_sync(
        &mut self,
        generation: i32,
        error: i16,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) {
        if self.generation != generation || self.state != GroupState::CompletingRebalance {
            return;
        }
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
            }
        }
        self.prepare_rebalance(now, now_ms, limits, "storing the group's assignment failed");
    }

    /// Handles a Heartbeat: the error code to answer with.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if matches!(self.state, GroupState::Dead | GroupState::Empty) {
            return code(ResponseError::UnknownMemberId);
        }
        if let Err(c) = self.check_member(member_id, instance_id) {
            return c;
        }
        if generation != self.generation {
            return code(ResponseError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            _ => 0,
        }
    }

    /// Handles one member of a LeaveGroup: the error code for it.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return code(ResponseError::CoordinatorNotAvailable);
        }
        let target = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return code(ResponseError::FencedInstanceId),
                None => return code(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        let Some(m) = self.remove_member(&target) else {
            if self.pending_members.remove(&target).is_some() {
                return 0;
            }
            return code(ResponseError::UnknownMemberId);
        };
        if let Some(tx) = m.awaiting_join {
            let _ = tx.send(JoinResult::error(
                code(ResponseError::UnknownMemberId),
                &target,
            ));
        }
        tracing::info!(group = %self.id, member = %target, "member left the group");
        self.member_gone(now, now_ms, limits, "a member left");
        0
    }

    fn member_gone(&mut self, now: Instant, now_ms: i64, limits: &Limits, why: &str) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, now_ms, limits, why);
                // With no members left the join phase is complete at once: Empty.
                self.try_complete_join(now, now_ms);
            }
            GroupState::PreparingRebalance => {
                self.try_complete_join(now, now_ms);
            }
            _ => {}
        }
    }

    /// Session and rebalance timeouts. Returns whether the group changed in a way worth
    /// persisting (it became empty).
    pub fn tick(&mut self, now: Instant, now_ms: i64, limits: &Limits) -> bool {
        let was_empty = self.state == GroupState::Empty;
        self.pending_members.retain(|_, deadline| now < *deadline);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
                    && now.saturating_duration_since(m.last_heartbeat) > m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member's session timed out; removing it");
            self.remove_member(&id);
            self.member_gone(now, now_ms, limits, "a member's session timed out");
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline.is_some_and(|t| now >= t)
        {
            // The leader never sent the assignment: drop members that did not sync.
            let lagging: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in lagging {
                tracing::info!(group = %self.id, member = %id, "member did not sync in time; removing it");
                self.remove_member(&id);
            }
            self.prepare_rebalance(now, now_ms, limits, "the sync phase timed out");
        }
        let completed = self.try_complete_join(now, now_ms);
        completed && self.state == GroupState::Empty && !was_empty
    }

    /// Answers every parked JoinGroup and SyncGroup with `error` (the coordinator moved
    /// or the group is gone).
    pub fn fail_parked(&mut self, error: i16) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult::error(error, &m.id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
            }
        }
    }

    /// The group's metadata record, as Kafka stores it.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restores a group from its stored metadata (at load). Members get a fresh session
    /// timeout: if they are gone, they expire and the group rebalances.
    pub fn restore(&mut self, v: GroupValue, now: Instant) {
        self.generation = v.generation;
        self.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.state_timestamp = v.state_timestamp;
        self.members.clear();
        self.static_members.clear();
        let protocol = self.protocol.clone().unwrap_or_default();
        for m in v.members {
            if let Some(i) = &m.instance_id {
                self.static_members.insert(i.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    last_heartbeat: now,
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            initial_rebalance_delay: Duration::ZERO,
            max_size: 100,
        }
    }

    fn params(member: &str, instance: Option<&str>) -> JoinParams {
        JoinParams {
            member_id: member.into(),
            instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 20_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: false,
        }
    }

    fn joined(o: JoinOutcome) -> JoinResult {
        match o {
            JoinOutcome::Respond(r) => r,
            JoinOutcome::Wait(mut rx) => rx.try_recv().expect("join completed"),
        }
    }

    /// Two static members reach Stable; returns their member ids.
    fn stable_static_group(g: &mut Group, now: Instant) -> (String, String) {
        let l = limits();
        let a = g.join(params("", Some("a")), now, 0, &l);
        let b = g.join(params("", Some("b")), now, 0, &l);
        // a's join completed alone; it rejoins for the rebalance b caused.
        let a_first = joined(a);
        let a2 = g.join(params(&a_first.member_id, Some("a")), now, 0, &l);
        let (ra, rb) = (joined(a2), joined(b));
        assert_eq!(ra.generation, rb.generation);
        let assignments = vec![
            (ra.member_id.clone(), Bytes::from_static(b"A")),
            (rb.member_id.clone(), Bytes::from_static(b"B")),
        ];
        let gen_ = g.generation;
        assert!(matches!(
            g.sync(&ra.member_id, None, gen_, None, None, assignments, now),
            SyncOutcome::Persist(_)
        ));
        g.complete_sync(gen_, 0);
        assert_eq!(g.state, GroupState::Stable);
        (ra.member_id, rb.member_id)
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_its_old_id() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (_a, b) = stable_static_group(&mut g, now);
        let generation = g.generation;
        // b restarts: empty member id, same instance id, same metadata.
        let r = joined(g.join(params("", Some("b")), now, 0, &limits()));
        assert_eq!(r.error, 0);
        assert_eq!(r.generation, generation);
        assert_eq!(g.state, GroupState::Stable);
        assert_ne!(r.member_id, b);
        match g.sync(&r.member_id, Some("b"), generation, None, None, vec![], now) {
            SyncOutcome::Respond(s) => assert_eq!(&s.assignment[..], b"B"),
            other => panic!("{other:?}"),
        }
        // The old incarnation (a zombie) is fenced, not told to rejoin as new.
        let z = joined(g.join(params(&b, Some("b")), now, 0, &limits()));
        assert_eq!(z.error, ResponseError::FencedInstanceId.code());
        assert_eq!(
            g.heartbeat(&b, Some("b"), generation, now),
            ResponseError::FencedInstanceId.code()
        );
    }

    #[test]
    fn join_timeout_removes_dynamic_members_but_keeps_static_ones() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, _b) = stable_static_group(&mut g, now);
        let l = limits();
        // A dynamic member joins; a rejoins; b (static, restarting) does not.
        let _c = g.join(params("", None), now, 0, &l);
        let _a2 = g.join(params(&a, Some("a")), now, 0, &l);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let later = now + Duration::from_secs(11);
        g.tick(later, 0, &l);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert!(g.static_members.contains_key("b"), "static member kept");
        assert_eq!(g.members.len(), 3);
        // Sessions still expire: b never heartbeats.
        g.tick(now + Duration::from_secs(21), 0, &l);
        assert!(!g.static_members.contains_key("b"));
    }
}
