//! Raft transport: openraft's messages as JSON inside the `sluice.quorum.v1.Quorum` gRPC
//! service on each broker's internal listener.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_api::quorum::Payload;
use sluice_api::quorum::quorum_client::QuorumClient;
use tonic::transport::Channel;

use super::types::{NodeId, TypeConfig};

/// A lazily connecting client of a peer's quorum service.
pub fn connect(addr: &str) -> Result<QuorumClient<Channel>, String> {
    let channel = crate::security::internal::endpoint(addr)?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy();
    Ok(QuorumClient::new(channel))
}

pub fn payload<T: Serialize>(cluster_id: &str, value: &T) -> Result<Payload, serde_json::Error> {
    Ok(Payload {
        cluster_id: cluster_id.to_string(),
        json: serde_json::to_vec(value)?,
    })
}

#[derive(Debug, Clone)]
pub struct Network {
    pub cluster_id: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            cluster_id: self.cluster_id.clone(),
            client: connect(&node.addr).map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    addr: String,
    cluster_id: String,
    client: Result<QuorumClient<Channel>, String>,
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

#[derive(Debug, thiserror::Error)]
#[error("metadata quorum peer {addr}: {reason}")]
struct PeerError {
    addr: String,
    reason: String,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let fail = |reason: String| PeerError {
            addr: self.addr.clone(),
            reason,
        };
        let body = payload(&self.cluster_id, req)
            .map_err(|e| RPCError::Network(NetworkError::new(&fail(e.to_string()))))?;
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                let e = fail(e.clone());
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let mut request = tonic::Request::new(body);
        request.set_timeout(ttl);
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let e = PeerError {
                    addr: self.addr.clone(),
                    reason: status.message().to_string(),
                };
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| {
                RPCError::Network(NetworkError::new(&PeerError {
                    addr: self.addr.clone(),
                    reason: format!("undecodable reply: {e}"),
                }))
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Method::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Method::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }
}
