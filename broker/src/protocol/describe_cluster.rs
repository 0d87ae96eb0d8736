//! DescribeCluster: cluster id, controller and brokers (as reached on this listener).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::metadata::brokers_on;
use super::{RequestContext, msg};

/// `endpoint_type` 1 asks for brokers; 2 (controllers) is for KRaft controllers.
const BROKERS: i8 = 1;

pub fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let md = ctx.broker.metadata.current();
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(md.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.broker.controller_id()));
    if ctx.cluster_denied(crate::security::acl::Operation::Describe) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        resp.error_message = msg("DESCRIBE on the cluster is required");
        return resp;
    }
    if ctx.version >= 1 {
        resp.endpoint_type = req.endpoint_type;
        if req.endpoint_type != BROKERS {
            resp.error_code = ResponseError::UnsupportedEndpointType.code();
            resp.error_message = msg("Only broker endpoints (endpoint type 1) are served");
            return resp;
        }
    }
    resp.brokers = brokers_on(&md, &ctx.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    resp
}
