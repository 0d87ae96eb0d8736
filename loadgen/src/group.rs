//! Classic consumer-group membership, as a Kafka consumer does it: FindCoordinator,
//! JoinGroup (protocol type "consumer", the "range" assignor), SyncGroup (the leader
//! computes the assignment), Heartbeat, LeaveGroup.
//!
//! One [`run_member`] task per consumer owns its coordinator connection and publishes the
//! partitions it currently owns on a watch channel; fetching is someone else's job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
    TopicName, consumer_protocol_assignment, consumer_protocol_subscription,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::watch;

use crate::client::Connection;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
/// Version of ConsumerProtocolSubscription/Assignment we write (what Kafka 3.x clients
/// write); newer versions from others are read as this one (fields are only appended).
const CONSUMER_PROTOCOL_VERSION: i16 = 3;
/// Time allowed for requests that the coordinator answers at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before asking for the coordinator again after a coordinator error.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct GroupOpts {
    pub group: String,
    pub topic: String,
    /// Partitions of `topic` (the leader assigns these).
    pub partitions: Vec<i32>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub heartbeat: Duration,
    /// Upper bound for one join (JoinGroup + SyncGroup rounds until assigned).
    pub join_timeout: Duration,
}

/// What a member owns: partitions of the topic in a generation. Generation -1 with no
/// partitions: not (or no longer) a member of a stable generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub generation: i32,
    pub partitions: Vec<i32>,
}

impl Assignment {
    pub fn none() -> Self {
        Self {
            generation: -1,
            partitions: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct MemberStats {
    /// Completed joins (the first one included).
    pub joins: u32,
    pub last_generation: i32,
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs one consumer-group member until `stop`: joins, publishes its assignment, heartbeats,
/// rejoins when the group rebalances, and leaves the group at the end.
pub async fn run_member(
    bootstrap: String,
    opts: Arc<GroupOpts>,
    assignment: watch::Sender<Assignment>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<MemberStats> {
    let mut m = Member::connect(&bootstrap, opts.clone()).await?;
    let mut stats = MemberStats::default();
    'join: loop {
        let joined = tokio::select! {
            r = m.join_and_sync() => Some(r),
            () = stopped(&mut stop) => None,
        };
        let Some(joined) = joined else {
            // Cancelled mid-request: the coordinator connection is out of step.
            m.leave(true).await?;
            return Ok(stats);
        };
        let owned = joined?;
        stats.joins += 1;
        stats.last_generation = owned.generation;
        assignment.send_replace(owned);
        let mut tick = tokio::time::interval(opts.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let beat = tokio::select! {
                _ = tick.tick() => true,
                () = stopped(&mut stop) => false,
            };
            if !beat {
                assignment.send_replace(Assignment::none());
                m.leave(false).await?;
                return Ok(stats);
            }
            if !m.heartbeat().await? {
                // Eager protocol: give up everything before rejoining.
                assignment.send_replace(Assignment::none());
                continue 'join;
            }
        }
    }
}

/// Outcome of one JoinGroup or SyncGroup round.
enum Round<T> {
    Done(T),
    /// Join again (with the member id we now hold).
    Rejoin,
    /// The coordinator moved or is not ready: look it up again, then join.
    Rediscover,
}

struct Member {
    bootstrap: String,
    opts: Arc<GroupOpts>,
    conn: Connection,
    member_id: StrBytes,
    generation: i32,
    owned: Vec<i32>,
}

impl Member {
    async fn connect(bootstrap: &str, opts: Arc<GroupOpts>) -> anyhow::Result<Self> {
        let conn = coordinator(bootstrap, &opts.group, Instant::now() + opts.join_timeout).await?;
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            opts,
            conn,
            member_id: StrBytes::default(),
            generation: -1,
            owned: Vec::new(),
        })
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.opts.group.clone()))
    }

    async fn rediscover(&mut self, deadline: Instant) -> anyhow::Result<()> {
        tokio::time::sleep(RETRY_BACKOFF).await;
        self.conn = coordinator(&self.bootstrap, &self.opts.group, deadline).await?;
        Ok(())
    }

    /// JoinGroup/SyncGroup rounds until this member has an assignment.
    async fn join_and_sync(&mut self) -> anyhow::Result<Assignment> {
        let deadline = Instant::now() + self.opts.join_timeout;
        loop {
            if Instant::now() >= deadline {
                bail!(
                    "no assignment from group {} at coordinator {} within {} s",
                    self.opts.group,
                    self.conn.addr,
                    self.opts.join_timeout.as_secs()
                );
            }
            let joined = match self.join().await? {
                Round::Done(j) => j,
                Round::Rejoin => continue,
                Round::Rediscover => {
                    self.rediscover(deadline).await?;
                    continue;
                }
            };
            let assignments = if joined.leader == joined.member_id {
                self.assign(&joined.members)?
            } else {
                Vec::new()
            };
            match self.sync(assignments).await? {
                Round::Done(partitions) => {
                    self.owned = partitions.clone();
                    return Ok(Assignment {
                        generation: self.generation,
                        partitions,
                    });
                }
                Round::Rejoin => continue,
                Round::Rediscover => self.rediscover(deadline).await?,
            }
        }
    }

    async fn join(&mut self) -> anyhow::Result<Round<JoinGroupResponse>> {
        let v = self.conn.pick_version(ApiKey::JoinGroup, (0, 9))?;
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(self.opts.topic.clone())])
            .with_owned_partitions(if self.owned.is_empty() {
                Vec::new()
            } else {
                vec![
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(self.opts.topic.clone())))
                        .with_partitions(self.owned.clone()),
                ]
            })
            .with_generation_id(self.generation);
        let req = JoinGroupRequest::default()
            .with_group_id(self.group_id())
            .with_session_timeout_ms(self.opts.session_timeout_ms)
            .with_rebalance_timeout_ms(self.opts.rebalance_timeout_ms)
            .with_member_id(self.member_id.clone())
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(ASSIGNOR))
                    .with_metadata(encode_versioned(&subscription, CONSUMER_PROTOCOL_VERSION)?),
            ]);
        // The coordinator holds JoinGroup until every member has joined (or the rebalance
        // timeout passes), plus group.initial.rebalance.delay.ms for a new group.
        let limit = Duration::from_millis(self.opts.rebalance_timeout_ms.max(0) as u64)
            + Duration::from_secs(10);
        let resp: JoinGroupResponse = self
            .conn
            .call_within(ApiKey::JoinGroup, v, &req, limit)
            .await
            .with_context(|| format!("JoinGroup of group {}", self.opts.group))?;
        match resp.error_code {
            0 => {
                if let Some(p) = &resp.protocol_name
                    && p.as_str() != ASSIGNOR
                {
                    bail!(
                        "group {} chose protocol {p:?}, expected {ASSIGNOR:?} (is the group used by other clients?)",
                        self.opts.group
                    );
                }
                self.member_id = resp.member_id.clone();
                self.generation = resp.generation_id;
                Ok(Round::Done(resp))
            }
            MEMBER_ID_REQUIRED => {
                if resp.member_id.is_empty() {
                    bail!(
                        "JoinGroup of group {} at {}: MEMBER_ID_REQUIRED without a member id",
                        self.opts.group,
                        self.conn.addr
                    );
                }
                self.member_id = resp.member_id;
                Ok(Round::Rejoin)
            }
            UNKNOWN_MEMBER_ID => {
                self.member_id = StrBytes::default();
                Ok(Round::Rejoin)
            }
            REBALANCE_IN_PROGRESS => Ok(Round::Rejoin),
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => {
                Ok(Round::Rediscover)
            }
            e => bail!(
                "JoinGroup of group {} at {} failed with error {e}",
                self.opts.group,
                self.conn.addr
            ),
        }
    }

    /// The leader's job: range-assign the topic's partitions over the members.
    fn assign(
        &self,
        members: &[JoinGroupResponseMember],
    ) -> anyhow::Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscribed = Vec::new();
        for m in members {
            let s: ConsumerProtocolSubscription =
                decode_versioned(m.metadata.clone(), CONSUMER_PROTOCOL_VERSION).with_context(
                    || {
                        format!(
                            "subscription of member {} of group {}",
                            m.member_id, self.opts.group
                        )
                    },
                )?;
            if s.topics.iter().any(|t| t.as_str() == self.opts.topic) {
                subscribed.push(m.member_id.clone());
            }
        }
        let ranges = range_assign(&subscribed, &self.opts.partitions);
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let partitions = ranges.get(&m.member_id).cloned().unwrap_or_default();
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                if partitions.is_empty() {
                    Vec::new()
                } else {
                    vec![
                        consumer_protocol_assignment::TopicPartition::default()
                            .with_topic(TopicName(StrBytes::from_string(self.opts.topic.clone())))
                            .with_partitions(partitions),
                    ]
                },
            );
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(m.member_id.clone())
                    .with_assignment(encode_versioned(&assignment, CONSUMER_PROTOCOL_VERSION)?),
            );
        }
        Ok(out)
    }

    async fn sync(
        &mut self,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> anyhow::Result<Round<Vec<i32>>> {
        let v = self.conn.pick_version(ApiKey::SyncGroup, (0, 5))?;
        let mut req = SyncGroupRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(self.member_id.clone())
            .with_assignments(assignments);
        if v >= 5 {
            req = req
                .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                .with_protocol_name(Some(StrBytes::from_static_str(ASSIGNOR)));
        }
        // Followers wait for the leader's SyncGroup.
        let limit = Duration::from_millis(self.opts.rebalance_timeout_ms.max(0) as u64)
            + Duration::from_secs(10);
        let resp: SyncGroupResponse = self
            .conn
            .call_within(ApiKey::SyncGroup, v, &req, limit)
            .await
            .with_context(|| format!("SyncGroup of group {}", self.opts.group))?;
        match resp.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => return Ok(Round::Rejoin),
            UNKNOWN_MEMBER_ID => {
                self.member_id = StrBytes::default();
                return Ok(Round::Rejoin);
            }
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => {
                return Ok(Round::Rediscover);
            }
            e => bail!(
                "SyncGroup of group {} (generation {}) at {} failed with error {e}",
                self.opts.group,
                self.generation,
                self.conn.addr
            ),
        }
        if resp.assignment.is_empty() {
            return Ok(Round::Done(Vec::new()));
        }
        let a: ConsumerProtocolAssignment =
            decode_versioned(resp.assignment, CONSUMER_PROTOCOL_VERSION).with_context(|| {
                format!(
                    "assignment of member {} of group {}",
                    self.member_id, self.opts.group
                )
            })?;
        let mut partitions: Vec<i32> = a
            .assigned_partitions
            .iter()
            .filter(|t| t.topic.0.as_str() == self.opts.topic)
            .flat_map(|t| t.partitions.iter().copied())
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        for p in &partitions {
            if !self.opts.partitions.contains(p) {
                bail!(
                    "group {} assigned partition {}/{p}, which the topic does not have",
                    self.opts.group,
                    self.opts.topic
                );
            }
        }
        Ok(Round::Done(partitions))
    }

    /// One heartbeat; false when the member must rejoin.
    async fn heartbeat(&mut self) -> anyhow::Result<bool> {
        let v = self.conn.pick_version(ApiKey::Heartbeat, (0, 4))?;
        let req = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(self.member_id.clone());
        let resp: HeartbeatResponse = self
            .conn
            .call_within(ApiKey::Heartbeat, v, &req, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("Heartbeat of group {}", self.opts.group))?;
        match resp.error_code {
            0 => Ok(true),
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => Ok(false),
            UNKNOWN_MEMBER_ID => {
                self.member_id = StrBytes::default();
                Ok(false)
            }
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => {
                self.rediscover(Instant::now() + self.opts.join_timeout)
                    .await?;
                Ok(false)
            }
            e => bail!(
                "Heartbeat of group {} (generation {}) at {} failed with error {e}",
                self.opts.group,
                self.generation,
                self.conn.addr
            ),
        }
    }

    /// LeaveGroup; on a fresh connection if the current one may be mid-request.
    async fn leave(&mut self, fresh_connection: bool) -> anyhow::Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        if fresh_connection {
            self.conn = coordinator(
                &self.bootstrap,
                &self.opts.group,
                Instant::now() + REQUEST_TIMEOUT,
            )
            .await?;
        }
        let v = self.conn.pick_version(ApiKey::LeaveGroup, (0, 5))?;
        let mut req = LeaveGroupRequest::default().with_group_id(self.group_id());
        req = if v >= 3 {
            req.with_members(vec![
                MemberIdentity::default().with_member_id(self.member_id.clone()),
            ])
        } else {
            req.with_member_id(self.member_id.clone())
        };
        let resp: LeaveGroupResponse = self
            .conn
            .call_within(ApiKey::LeaveGroup, v, &req, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("LeaveGroup of group {}", self.opts.group))?;
        // UNKNOWN_MEMBER_ID: the coordinator already dropped us; nothing to leave.
        let member_errors = resp.members.iter().map(|m| m.error_code);
        for e in std::iter::once(resp.error_code).chain(member_errors) {
            if e != 0 && e != UNKNOWN_MEMBER_ID {
                bail!(
                    "LeaveGroup of member {} of group {} at {} failed with error {e}",
                    self.member_id,
                    self.opts.group,
                    self.conn.addr
                );
            }
        }
        self.member_id = StrBytes::default();
        Ok(())
    }
}

/// Finds the group's coordinator through `bootstrap` (FindCoordinator, key type 0) and
/// connects to it, retrying while the coordinator is not available yet.
async fn coordinator(
    bootstrap: &str,
    group: &str,
    deadline: Instant,
) -> anyhow::Result<Connection> {
    let mut conn = Connection::connect(bootstrap).await?;
    let v = conn.pick_version(ApiKey::FindCoordinator, (0, 6))?;
    let key = StrBytes::from_string(group.to_string());
    // Key type 0: a group. v4+ look up a list of keys.
    let req = FindCoordinatorRequest::default().with_key_type(0);
    let req = if v >= 4 {
        req.with_coordinator_keys(vec![key])
    } else {
        req.with_key(key)
    };
    loop {
        let resp: FindCoordinatorResponse = conn
            .call_within(ApiKey::FindCoordinator, v, &req, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("FindCoordinator for group {group}"))?;
        let (error, message, host, port) = if v >= 4 {
            let c = resp.coordinators.first().with_context(|| {
                format!("FindCoordinator for group {group} at {bootstrap}: no coordinator in the response")
            })?;
            (
                c.error_code,
                c.error_message.clone(),
                c.host.clone(),
                c.port,
            )
        } else {
            (
                resp.error_code,
                resp.error_message.clone(),
                resp.host.clone(),
                resp.port,
            )
        };
        match error {
            0 => {
                let addr = format!("{host}:{port}");
                return Connection::connect(&addr)
                    .await
                    .with_context(|| format!("coordinator of group {group}"));
            }
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
                if Instant::now() + RETRY_BACKOFF < deadline =>
            {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            e => bail!(
                "FindCoordinator for group {group} at {bootstrap} failed with error {e}: {message:?}"
            ),
        }
    }
}

/// Kafka's RangeAssignor for one topic: members sorted by id, each gets a consecutive
/// range, the first `partitions % members` one partition more.
pub fn range_assign(members: &[StrBytes], partitions: &[i32]) -> BTreeMap<StrBytes, Vec<i32>> {
    let mut members = members.to_vec();
    members.sort();
    members.dedup();
    let mut partitions = partitions.to_vec();
    partitions.sort_unstable();
    let mut out = BTreeMap::new();
    if members.is_empty() {
        return out;
    }
    let (per, extra) = (
        partitions.len() / members.len(),
        partitions.len() % members.len(),
    );
    let mut next = 0;
    for (i, m) in members.into_iter().enumerate() {
        let n = per + usize::from(i < extra);
        out.insert(m, partitions[next..next + n].to_vec());
        next += n;
    }
    out
}

/// Consumer protocol messages travel as a big-endian i16 version, then the body.
pub fn encode_versioned<M: Encodable>(msg: &M, version: i16) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(2 + msg.compute_size(version)?);
    buf.put_i16(version);
    msg.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Reads a version-prefixed consumer protocol message; versions above `max` are read as
/// `max` (later versions only append fields).
pub fn decode_versioned<M: Decodable>(mut buf: Bytes, max: i16) -> anyhow::Result<M> {
    if buf.remaining() < 2 {
        bail!("{} bytes, too short for a version", buf.len());
    }
    let version = buf.get_i16();
    if version < 0 {
        bail!("negative version {version}");
    }
    M::decode(&mut buf, version.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&'static str]) -> Vec<StrBytes> {
        names.iter().map(|n| StrBytes::from_static_str(n)).collect()
    }

    #[test]
    fn range_assignment_matches_kafka() {
        let a = range_assign(&ids(&["c", "a", "b"]), &[7, 6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(a[&StrBytes::from_static_str("a")], vec![0, 1, 2]);
        assert_eq!(a[&StrBytes::from_static_str("b")], vec![3, 4, 5]);
        assert_eq!(a[&StrBytes::from_static_str("c")], vec![6, 7]);
        let a = range_assign(&ids(&["a", "b", "c"]), &[0]);
        assert_eq!(a[&StrBytes::from_static_str("a")], vec![0]);
        assert!(a[&StrBytes::from_static_str("c")].is_empty());
        assert!(range_assign(&[], &[0, 1]).is_empty());
    }

    #[test]
    fn consumer_protocol_round_trip() {
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(4);
        let b = encode_versioned(&s, 3).unwrap();
        assert_eq!(&b[..2], &[0, 3]);
        let back: ConsumerProtocolSubscription = decode_versioned(b, 3).unwrap();
        assert_eq!(back, s);
        // Version 0 as an old client writes it: topics, then null user data.
        let v0 = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
        let back: ConsumerProtocolSubscription = decode_versioned(v0, 3).unwrap();
        assert_eq!(back.topics, vec![StrBytes::from_static_str("t")]);
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![1, 2]),
        ]);
        let back: ConsumerProtocolAssignment =
            decode_versioned(encode_versioned(&a, 3).unwrap(), 3).unwrap();
        assert_eq!(back, a);
    }
}
