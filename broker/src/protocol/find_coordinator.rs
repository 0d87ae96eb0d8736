//! FindCoordinator. The group and transaction coordinators do not exist yet, so every key
//! is answered with COORDINATOR_NOT_AVAILABLE — what Kafka answers while its coordinator
//! topic is not available, and what clients retry on.
//!
//! The API is still needed: librdkafka only enables LZ4 compression when the broker lists
//! FindCoordinator v0 in ApiVersions.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{RequestContext, msg};

const MESSAGE: &str = "The coordinator is not available: consumer groups and transactions are not supported by this Sluice version";

pub fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let code = ResponseError::CoordinatorNotAvailable.code();
    tracing::debug!(
        client = ctx.client(),
        "FindCoordinator answered with COORDINATOR_NOT_AVAILABLE"
    );
    if ctx.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(
            req.coordinator_keys
                .into_iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(msg(MESSAGE))
                })
                .collect(),
        );
    }
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(-1))
        .with_port(-1);
    if ctx.version >= 1 {
        resp.error_message = msg(MESSAGE);
    }
    resp
}
