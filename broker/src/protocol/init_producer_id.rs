//! InitProducerId for idempotent producers: a new producer id with epoch 0. Every version
//! is answered the same way (v0-v2 carry no id or epoch; from v3 a client may send its
//! old id to bump the epoch, which Kafka also answers with a fresh id for producers
//! without a `transactional.id`).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::RequestContext;
use crate::security::acl::{CLUSTER_RESOURCE, Operation, ResourceType};

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        tracing::info!(client = ctx.client(), peer = %ctx.peer,
            "InitProducerId with a transactional.id refused: transactions are not supported by this Sluice version");
        return resp.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    let broker = &ctx.broker;
    if ctx.authorizing() {
        // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
        let md = broker.metadata.current();
        let allowed = ctx.allowed_quietly(
            &md,
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            CLUSTER_RESOURCE,
        ) || ctx.any_allowed(&md, Operation::Write, ResourceType::Topic);
        if !allowed {
            return resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        }
    }
    match broker
        .producer_ids
        .next_id(broker.node_id, broker.metadata.as_ref())
        .await
    {
        Ok(id) => resp
            .with_error_code(0)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(client = ctx.client(), error = %e, "cannot allocate a producer id");
            resp.with_error_code(ResponseError::CoordinatorLoadInProgress.code())
        }
    }
}
