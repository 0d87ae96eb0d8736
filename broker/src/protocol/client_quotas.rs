//! Client quotas: throttling responses (Kafka's KIP-219: the response says how long,
//! and the connection waits that long before its next request), and
//! DescribeClientQuotas / AlterClientQuotas.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages as m;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{RequestContext, msg};
use crate::metadata::MetadataCommand;
use crate::security::acl::Operation;
use crate::security::quota::{self, EntityName, QuotaEntity, QuotaKind};

/// Responses that carry `throttle_time_ms`.
pub trait Throttle {
    fn throttle_ms(&self) -> i32 {
        0
    }
    fn set_throttle_ms(&mut self, _ms: i32) {}
}

macro_rules! throttled {
    ($($t:ident),* $(,)?) => {
        $(impl Throttle for m::$t {
            fn throttle_ms(&self) -> i32 {
                self.throttle_time_ms
            }
            fn set_throttle_ms(&mut self, ms: i32) {
                self.throttle_time_ms = ms;
            }
        })*
    };
}

throttled!(
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    MetadataResponse,
    ApiVersionsResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    DeleteRecordsResponse,
    OffsetForLeaderEpochResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    CreatePartitionsResponse,
    IncrementalAlterConfigsResponse,
    DescribeClusterResponse,
    AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsResponse,
    ElectLeadersResponse,
    FindCoordinatorResponse,
    InitProducerIdResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    OffsetDeleteResponse,
    ListGroupsResponse,
    DescribeGroupsResponse,
    DeleteGroupsResponse,
    DescribeAclsResponse,
    CreateAclsResponse,
    DeleteAclsResponse,
    DescribeUserScramCredentialsResponse,
    AlterUserScramCredentialsResponse,
    DescribeClientQuotasResponse,
    AlterClientQuotasResponse,
);

impl Throttle for m::SaslHandshakeResponse {}
impl Throttle for m::SaslAuthenticateResponse {}

/// Records this request against the client's quotas and sets the throttle time in the
/// response. Free when no quota is configured.
pub fn apply<R: Throttle + Encodable>(ctx: &RequestContext, body: &mut R) {
    if ctx.quota_exempt.load(Ordering::Relaxed) {
        return;
    }
    let md = ctx.broker.metadata.current();
    if md.quotas.is_empty() {
        return;
    }
    let (user, client) = (ctx.user(), ctx.client_id.as_deref().unwrap_or(""));
    let meter = &ctx.broker.security.quotas;
    let now = Instant::now();
    let mut throttle = Duration::ZERO;
    let mut record = |kind: QuotaKind, amount: f64, metric: &'static str| {
        if let Some((key, bound)) = quota::resolve(&md.quotas, user, client, kind) {
            let t = meter.record(&key, amount, bound, now);
            if !t.is_zero() {
                ctx.broker.metrics.throttled(metric, t.as_secs_f64());
            }
            throttle = throttle.max(t);
        }
    };
    match ctx.api {
        m::ApiKey::Produce => record(QuotaKind::Produce, ctx.request_bytes as f64, "produce"),
        m::ApiKey::Fetch => {
            let size = body.compute_size(ctx.version).unwrap_or(0);
            record(QuotaKind::Fetch, size as f64, "fetch");
        }
        _ => {}
    }
    // request_percentage: handler time (not waits) as a percentage of one thread.
    let waited = Duration::from_micros(ctx.waited_us.load(Ordering::Relaxed));
    let busy = ctx.started.elapsed().saturating_sub(waited).as_secs_f64() * 100.0;
    record(QuotaKind::Request, busy, "request");
    if !throttle.is_zero() {
        let ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
        body.set_throttle_ms(body.throttle_ms().max(ms));
        ctx.throttle_ms.store(ms, Ordering::Relaxed);
    }
}

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";

fn name_of(n: &EntityName) -> Option<StrBytes> {
    match n {
        EntityName::Default => None,
        EntityName::Named(s) => Some(StrBytes::from_string(s.clone())),
    }
}

pub fn describe(
    ctx: &RequestContext,
    req: m::DescribeClientQuotasRequest,
) -> m::DescribeClientQuotasResponse {
    use m::describe_client_quotas_response::{EntityData, EntryData, ValueData};
    let md = ctx.broker.metadata.current();
    let mut resp = m::DescribeClientQuotasResponse::default();
    if !ctx.cluster_allowed(&md, Operation::DescribeConfigs) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        resp.error_message = msg("DESCRIBE_CONFIGS on the cluster is required to read quotas");
        return resp;
    }
    for c in &req.components {
        if c.entity_type.as_str() != USER && c.entity_type.as_str() != CLIENT_ID {
            resp.error_code = ResponseError::InvalidRequest.code();
            resp.error_message = msg(format!(
                "entity type '{}' is not supported (user, client-id)",
                c.entity_type.as_str()
            ));
            return resp;
        }
    }
    let part = |e: &QuotaEntity, ty: &str| -> Option<EntityName> {
        if ty == USER {
            e.user.clone()
        } else {
            e.client_id.clone()
        }
    };
    let mut entries = Vec::new();
    for (entity, values) in &md.quotas {
        let matches = req.components.iter().all(|c| {
            let Some(have) = part(entity, c.entity_type.as_str()) else {
                return false;
            };
            match c.match_type {
                0 => c
                    ._match
                    .as_ref()
                    .is_some_and(|n| have == EntityName::Named(n.to_string())),
                1 => have == EntityName::Default,
                _ => true,
            }
        });
        let strict_ok = !req.strict
            || [USER, CLIENT_ID].iter().all(|ty| {
                part(entity, ty).is_none()
                    || req.components.iter().any(|c| c.entity_type.as_str() == *ty)
            });
        if !matches || !strict_ok {
            continue;
        }
        let mut ent = Vec::new();
        if let Some(u) = &entity.user {
            ent.push(
                EntityData::default()
                    .with_entity_type(StrBytes::from_static_str(USER))
                    .with_entity_name(name_of(u)),
            );
        }
        if let Some(c) = &entity.client_id {
            ent.push(
                EntityData::default()
                    .with_entity_type(StrBytes::from_static_str(CLIENT_ID))
                    .with_entity_name(name_of(c)),
            );
        }
        entries.push(
            EntryData::default().with_entity(ent).with_values(
                values
                    .iter()
                    .map(|(k, v)| {
                        ValueData::default()
                            .with_key(StrBytes::from_string(k.clone()))
                            .with_value(*v)
                    })
                    .collect(),
            ),
        );
    }
    resp.entries = Some(entries);
    resp
}

pub async fn alter(
    ctx: &RequestContext,
    req: m::AlterClientQuotasRequest,
) -> m::AlterClientQuotasResponse {
    use m::alter_client_quotas_response::{EntityData, EntryData};
    let md = ctx.broker.metadata.current();
    let authorized = ctx.cluster_allowed(&md, Operation::AlterConfigs);
    let mut results = Vec::with_capacity(req.entries.len());
    let mut changes = Vec::new();
    for e in &req.entries {
        let entity_echo: Vec<EntityData> = e
            .entity
            .iter()
            .map(|d| {
                EntityData::default()
                    .with_entity_type(d.entity_type.clone())
                    .with_entity_name(d.entity_name.clone())
            })
            .collect();
        let parsed = (|| {
            if !authorized {
                return Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "ALTER_CONFIGS on the cluster is required to change quotas".to_string(),
                ));
            }
            let mut entity = QuotaEntity {
                user: None,
                client_id: None,
            };
            for d in &e.entity {
                let name = match &d.entity_name {
                    Some(n) => EntityName::Named(n.to_string()),
                    None => EntityName::Default,
                };
                let slot = match d.entity_type.as_str() {
                    USER => &mut entity.user,
                    CLIENT_ID => &mut entity.client_id,
                    other => {
                        return Err((
                            ResponseError::InvalidRequest,
                            format!("entity type '{other}' is not supported (user, client-id)"),
                        ));
                    }
                };
                if slot.replace(name).is_some() {
                    return Err((
                        ResponseError::InvalidRequest,
                        format!("entity type '{}' is given twice", d.entity_type.as_str()),
                    ));
                }
            }
            if entity.user.is_none() && entity.client_id.is_none() {
                return Err((
                    ResponseError::InvalidRequest,
                    "the entity names no user or client-id".into(),
                ));
            }
            let mut ops = Vec::new();
            for op in &e.ops {
                let key = op.key.to_string();
                if op.remove {
                    if !quota::QUOTA_KEYS.contains(&key.as_str()) {
                        return Err((
                            ResponseError::InvalidRequest,
                            format!("unknown quota '{key}'"),
                        ));
                    }
                    ops.push((key, None));
                } else {
                    quota::validate(&key, op.value)
                        .map_err(|m| (ResponseError::InvalidRequest, m))?;
                    ops.push((key, Some(op.value)));
                }
            }
            Ok((entity, ops))
        })();
        let r = EntryData::default().with_entity(entity_echo);
        match parsed {
            Ok(change) => {
                changes.push((results.len(), change));
                results.push(r);
            }
            Err((code, m)) => {
                results.push(r.with_error_code(code.code()).with_error_message(msg(m)))
            }
        }
    }
    if !req.validate_only && !changes.is_empty() {
        let entries: Vec<_> = changes.iter().map(|(_, c)| c.clone()).collect();
        match ctx
            .broker
            .metadata
            .submit(MetadataCommand::AlterClientQuotas {
                entries: entries.clone(),
            })
            .await
        {
            Ok(_) => tracing::info!(principal = %ctx.principal, ?entries, "client quotas changed"),
            Err(e) => {
                let code = super::topics::TopicError::from(e.clone()).code;
                for (i, _) in &changes {
                    results[*i].error_code = code;
                    results[*i].error_message = msg(e.to_string());
                }
            }
        }
    }
    m::AlterClientQuotasResponse::default().with_entries(results)
}
