//! Server side of `sluice.quorum.v1.Quorum`.

use std::sync::Arc;

use serde::Serialize;
use sluice_api::quorum::Payload;
use sluice_api::quorum::quorum_server::Quorum as QuorumApi;
use tonic::{Request, Response, Status};

use super::Quorum;
use super::network::payload;

pub struct QuorumService {
    quorum: Arc<Quorum>,
}

impl QuorumService {
    pub fn new(quorum: Arc<Quorum>) -> Self {
        Self { quorum }
    }

    fn open<T: serde::de::DeserializeOwned>(&self, req: Request<Payload>) -> Result<T, Status> {
        let p = req.into_inner();
        if p.cluster_id != self.quorum.cluster_id() {
            return Err(Status::permission_denied(format!(
                "INCONSISTENT_CLUSTER_ID: this broker belongs to cluster {}, the caller to {}",
                self.quorum.cluster_id(),
                p.cluster_id
            )));
        }
        serde_json::from_slice(&p.json)
            .map_err(|e| Status::invalid_argument(format!("undecodable quorum message: {e}")))
    }

    fn reply<T: Serialize>(&self, value: &T) -> Result<Response<Payload>, Status> {
        payload(self.quorum.cluster_id(), value)
            .map(Response::new)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[tonic::async_trait]
impl QuorumApi for QuorumService {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = self.open(req)?;
        let r = self.quorum.raft().append_entries(rpc).await;
        self.reply(&r)
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = self.open(req)?;
        let r = self.quorum.raft().vote(rpc).await;
        self.reply(&r)
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = self.open(req)?;
        let r = self.quorum.raft().install_snapshot(rpc).await;
        self.reply(&r)
    }

    async fn submit(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let cmd = self.open(req)?;
        let r = self.quorum.submit_here(cmd).await;
        self.reply(&r)
    }

    async fn join(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let join = self.open(req)?;
        let r = self.quorum.handle_join(join).await;
        self.reply(&r)
    }

    async fn heartbeat(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let hb = self.open(req)?;
        let r = self.quorum.handle_heartbeat(hb).await;
        self.reply(&r)
    }
}
