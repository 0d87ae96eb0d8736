//! Kafka request handling: decode a frame with kafka-protocol, run the API's handler,
//! encode the response. One module per API.

mod acls;
mod api_versions;
pub mod authz;
mod client_quotas;
pub mod configs;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod fetch;
mod find_coordinator;
mod groups;
mod init_producer_id;
mod legacy_produce;
mod list_offsets;
pub mod metadata;
mod offset_for_leader_epoch;
mod produce;
pub mod reassignments;
pub mod sasl;
mod scram_credentials;
pub mod topics;
pub mod versions;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::broker::Broker;
use crate::metrics::ApiLabel;

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this frame (size prefix included).
    Respond(Bytes),
    /// acks=0 produce: nothing is sent back.
    NoResponse,
    /// Protocol violation: log it and close the connection, as Kafka does.
    Close(String),
    /// Send this frame, then close (failed authentication).
    RespondClose(Bytes, String),
}

/// Per-request facts handlers may need.
#[derive(Debug)]
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<StrBytes>,
    pub peer: SocketAddr,
    /// Name of the listener the request arrived on: Metadata answers with the brokers'
    /// endpoints on the same listener.
    pub listener: Arc<str>,
    /// `User:name` of the connection (`User:ANONYMOUS` when unauthenticated).
    pub principal: Arc<str>,
    /// Client host as ACLs name it.
    pub host: String,
    pub started: Instant,
    /// Size of the request frame (produce quotas).
    pub request_bytes: usize,
    /// Throttle time given in the response; the connection waits that long.
    pub throttle_ms: AtomicI32,
    /// Replication traffic is not subject to client quotas.
    pub quota_exempt: AtomicBool,
    /// Time spent waiting (long polls, acks=all, remote reads), which
    /// `request_percentage` quotas do not count as handler time.
    pub waited_us: std::sync::atomic::AtomicU64,
}

impl RequestContext {
    /// Counts `since.elapsed()` as waiting rather than work.
    pub fn waited(&self, since: Instant) {
        self.waited_us
            .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    pub fn client(&self) -> &str {
        self.client_id.as_deref().unwrap_or("-")
    }

    /// The user name without `User:` (quota entities use it).
    pub fn user(&self) -> &str {
        self.principal
            .strip_prefix("User:")
            .unwrap_or(&self.principal)
    }
}

/// Encodes a response frame: size, header, body.
pub fn encode_frame<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, String> {
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .and_then(|h| body.compute_size(version).map(|b| h + b))
        .map_err(|e| format!("cannot size {api:?} v{version} response: {e}"))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .and_then(|()| body.encode(&mut buf, version))
        .map_err(|e| format!("cannot encode {api:?} v{version} response: {e}"))?;
    Ok(buf.freeze())
}

fn respond<R: Encodable + client_quotas::Throttle>(ctx: &RequestContext, mut body: R) -> Outcome {
    client_quotas::apply(ctx, &mut body);
    match encode_frame(ctx.api, ctx.version, ctx.correlation_id, &body) {
        Ok(b) => Outcome::Respond(b),
        Err(e) => Outcome::Close(e),
    }
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

macro_rules! decode_or_close {
    ($ty:ty, $ctx:expr, $body:expr) => {
        match <$ty>::decode(&mut $body, $ctx.version) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Close(format!(
                    "malformed {:?} v{} request body: {e}",
                    $ctx.api, $ctx.version
                ));
            }
        }
    };
}

/// Handles one request frame (without its size prefix).
pub async fn handle_frame(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: SocketAddr,
    session: &mut sasl::Session,
) -> Outcome {
    use kafka_protocol::messages as m;
    let request_bytes = frame.len() + 4;
    if frame.len() < 8 {
        broker.metrics.connection_error("malformed_request");
        return Outcome::Close(format!(
            "request of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let raw_key = be_i16(&frame[0..2]);
    let version = be_i16(&frame[2..4]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(raw_key) else {
        broker.metrics.connection_error("unknown_api");
        return Outcome::Close(format!("unknown API key {raw_key}"));
    };
    if api != ApiKey::ApiVersions && broker.out_of_contact() {
        // Its metadata may be stale and it may no longer lead anything: clients go to
        // the other brokers until it is back in contact with the controller.
        broker.metrics.connection_error("out_of_contact");
        return Outcome::Close(
            "this broker lost contact with the controller; use the other brokers".into(),
        );
    }
    if let Some(reason) = session.refuse(api) {
        broker.metrics.connection_error("unauthenticated");
        return Outcome::Close(reason);
    }
    let Some((min, max)) = versions::supported_range(api) else {
        broker.metrics.connection_error("unsupported_api");
        return Outcome::Close(format!("API {api:?} is not supported by this broker"));
    };
    if api == ApiKey::ApiVersions && !(min..=max).contains(&version) {
        // A newer client: answer in v0 so it can pick a version we speak (KIP-511).
        return api_versions::unsupported_version_response(correlation_id);
    }
    if api == ApiKey::Produce && (0..=versions::LEGACY_PRODUCE_MAX).contains(&version) {
        broker.metrics.connection_error("legacy_produce");
        return legacy_produce::reject(frame, version, correlation_id);
    }
    if !(min..=max).contains(&version) {
        broker.metrics.connection_error("unsupported_version");
        return Outcome::Close(format!(
            "{api:?} v{version} is not supported (supported: v{min}-v{max})"
        ));
    }
    let header = match RequestHeader::decode(&mut frame, api.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => {
            broker.metrics.connection_error("malformed_request");
            return Outcome::Close(format!("malformed {api:?} v{version} request header: {e}"));
        }
    };
    let ctx = RequestContext {
        broker: broker.clone(),
        api,
        version,
        correlation_id,
        client_id: header.client_id,
        peer,
        listener: session.listener.clone(),
        principal: session.principal.clone(),
        host: peer.ip().to_string(),
        started: Instant::now(),
        request_bytes,
        throttle_ms: AtomicI32::new(0),
        quota_exempt: AtomicBool::new(false),
        waited_us: std::sync::atomic::AtomicU64::new(0),
    };
    let started = ctx.started;
    let outcome = match api {
        ApiKey::SaslHandshake => {
            let req = decode_or_close!(m::SaslHandshakeRequest, ctx, frame);
            sasl::handshake(&ctx, session, req)
        }
        ApiKey::SaslAuthenticate => {
            let req = decode_or_close!(m::SaslAuthenticateRequest, ctx, frame);
            sasl::authenticate(&ctx, session, req).await
        }
        _ => dispatch(&ctx, frame).await,
    };
    let throttle = ctx.throttle_ms.load(Ordering::Relaxed);
    if throttle > 0 {
        session.throttled_until =
            Some(Instant::now() + std::time::Duration::from_millis(throttle as u64));
    }
    let label = ApiLabel {
        api: versions::api_name(api),
    };
    broker.metrics.requests.get_or_create(&label).inc();
    broker
        .metrics
        .request_duration
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    if let Outcome::Close(reason) = &outcome
        && reason.starts_with("malformed")
    {
        broker.metrics.connection_error("malformed_request");
    }
    outcome
}

async fn dispatch(ctx: &RequestContext, mut body: Bytes) -> Outcome {
    use kafka_protocol::messages as m;
    match ctx.api {
        ApiKey::ApiVersions => {
            let req = decode_or_close!(m::ApiVersionsRequest, ctx, body);
            respond(ctx, api_versions::handle(ctx, req))
        }
        ApiKey::Metadata => {
            let req = decode_or_close!(m::MetadataRequest, ctx, body);
            respond(ctx, metadata::handle(ctx, req).await)
        }
        ApiKey::Produce => {
            let req = decode_or_close!(m::ProduceRequest, ctx, body);
            let acks = req.acks;
            let (resp, failed) = produce::handle(ctx, req).await;
            match (acks, failed) {
                // The only way to tell an acks=0 producer something went wrong.
                (0, true) => Outcome::Close(
                    "acks=0 produce failed; closing so the producer refreshes metadata".into(),
                ),
                (0, false) => Outcome::NoResponse,
                _ => respond(ctx, resp),
            }
        }
        ApiKey::Fetch => {
            let req = decode_or_close!(m::FetchRequest, ctx, body);
            respond(ctx, fetch::handle(ctx, req).await)
        }
        ApiKey::ListOffsets => {
            let req = decode_or_close!(m::ListOffsetsRequest, ctx, body);
            respond(ctx, list_offsets::handle(ctx, req).await)
        }
        ApiKey::CreateTopics => {
            let req = decode_or_close!(m::CreateTopicsRequest, ctx, body);
            respond(ctx, create_topics::handle(ctx, req).await)
        }
        ApiKey::DeleteTopics => {
            let req = decode_or_close!(m::DeleteTopicsRequest, ctx, body);
            respond(ctx, delete_topics::handle(ctx, req).await)
        }
        ApiKey::CreatePartitions => {
            let req = decode_or_close!(m::CreatePartitionsRequest, ctx, body);
            respond(ctx, create_partitions::handle(ctx, req).await)
        }
        ApiKey::DeleteRecords => {
            let req = decode_or_close!(m::DeleteRecordsRequest, ctx, body);
            respond(ctx, delete_records::handle(ctx, req).await)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = decode_or_close!(m::OffsetForLeaderEpochRequest, ctx, body);
            respond(ctx, offset_for_leader_epoch::handle(ctx, req))
        }
        ApiKey::DescribeConfigs => {
            let req = decode_or_close!(m::DescribeConfigsRequest, ctx, body);
            respond(ctx, configs::describe(ctx, req))
        }
        ApiKey::AlterConfigs => {
            let req = decode_or_close!(m::AlterConfigsRequest, ctx, body);
            respond(ctx, configs::alter(ctx, req).await)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = decode_or_close!(m::IncrementalAlterConfigsRequest, ctx, body);
            respond(ctx, configs::incremental_alter(ctx, req).await)
        }
        ApiKey::AlterPartitionReassignments => {
            let req = decode_or_close!(m::AlterPartitionReassignmentsRequest, ctx, body);
            respond(ctx, reassignments::alter(ctx, req).await)
        }
        ApiKey::ListPartitionReassignments => {
            let req = decode_or_close!(m::ListPartitionReassignmentsRequest, ctx, body);
            respond(ctx, reassignments::list(ctx, req))
        }
        ApiKey::ElectLeaders => {
            let req = decode_or_close!(m::ElectLeadersRequest, ctx, body);
            respond(ctx, reassignments::elect(ctx, req).await)
        }
        ApiKey::DescribeCluster => {
            let req = decode_or_close!(m::DescribeClusterRequest, ctx, body);
            respond(ctx, describe_cluster::handle(ctx, req))
        }
        ApiKey::FindCoordinator => {
            let req = decode_or_close!(m::FindCoordinatorRequest, ctx, body);
            respond(ctx, find_coordinator::handle(ctx, req).await)
        }
        ApiKey::InitProducerId => {
            let req = decode_or_close!(m::InitProducerIdRequest, ctx, body);
            respond(ctx, init_producer_id::handle(ctx, req).await)
        }
        ApiKey::JoinGroup => {
            let req = decode_or_close!(m::JoinGroupRequest, ctx, body);
            respond(ctx, groups::join(ctx, req).await)
        }
        ApiKey::SyncGroup => {
            let req = decode_or_close!(m::SyncGroupRequest, ctx, body);
            respond(ctx, groups::sync(ctx, req).await)
        }
        ApiKey::Heartbeat => {
            let req = decode_or_close!(m::HeartbeatRequest, ctx, body);
            respond(ctx, groups::heartbeat(ctx, req))
        }
        ApiKey::LeaveGroup => {
            let req = decode_or_close!(m::LeaveGroupRequest, ctx, body);
            respond(ctx, groups::leave(ctx, req).await)
        }
        ApiKey::OffsetCommit => {
            let req = decode_or_close!(m::OffsetCommitRequest, ctx, body);
            respond(ctx, groups::offset_commit(ctx, req).await)
        }
        ApiKey::OffsetFetch => {
            let req = decode_or_close!(m::OffsetFetchRequest, ctx, body);
            respond(ctx, groups::offset_fetch(ctx, req))
        }
        ApiKey::OffsetDelete => {
            let req = decode_or_close!(m::OffsetDeleteRequest, ctx, body);
            respond(ctx, groups::offset_delete(ctx, req).await)
        }
        ApiKey::ListGroups => {
            let req = decode_or_close!(m::ListGroupsRequest, ctx, body);
            respond(ctx, groups::list(ctx, req))
        }
        ApiKey::DescribeGroups => {
            let req = decode_or_close!(m::DescribeGroupsRequest, ctx, body);
            respond(ctx, groups::describe(ctx, req))
        }
        ApiKey::DeleteGroups => {
            let req = decode_or_close!(m::DeleteGroupsRequest, ctx, body);
            respond(ctx, groups::delete(ctx, req).await)
        }
        ApiKey::DescribeAcls => {
            let req = decode_or_close!(m::DescribeAclsRequest, ctx, body);
            respond(ctx, acls::describe(ctx, req))
        }
        ApiKey::CreateAcls => {
            let req = decode_or_close!(m::CreateAclsRequest, ctx, body);
            respond(ctx, acls::create(ctx, req).await)
        }
        ApiKey::DeleteAcls => {
            let req = decode_or_close!(m::DeleteAclsRequest, ctx, body);
            respond(ctx, acls::delete(ctx, req).await)
        }
        ApiKey::DescribeUserScramCredentials => {
            let req = decode_or_close!(m::DescribeUserScramCredentialsRequest, ctx, body);
            respond(ctx, scram_credentials::describe(ctx, req))
        }
        ApiKey::AlterUserScramCredentials => {
            let req = decode_or_close!(m::AlterUserScramCredentialsRequest, ctx, body);
            respond(ctx, scram_credentials::alter(ctx, req).await)
        }
        ApiKey::DescribeClientQuotas => {
            let req = decode_or_close!(m::DescribeClientQuotasRequest, ctx, body);
            respond(ctx, client_quotas::describe(ctx, req))
        }
        ApiKey::AlterClientQuotas => {
            let req = decode_or_close!(m::AlterClientQuotasRequest, ctx, body);
            respond(ctx, client_quotas::alter(ctx, req).await)
        }
        other => Outcome::Close(format!("API {other:?} is not supported by this broker")),
    }
}

/// The error for a partition this broker does not host: NOT_LEADER_OR_FOLLOWER when it
/// exists in the cluster (the client refreshes its metadata and retries), otherwise
/// UNKNOWN_TOPIC_OR_PARTITION.
pub fn absent_partition_error(broker: &Broker, topic: &str, partition: i32) -> i16 {
    let md = broker.metadata.current();
    let exists = md
        .topics
        .get(topic)
        .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()));
    if exists {
        kafka_protocol::ResponseError::NotLeaderOrFollower.code()
    } else {
        kafka_protocol::ResponseError::UnknownTopicOrPartition.code()
    }
}

/// `Some(message)` as the StrBytes clients display.
pub fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}
