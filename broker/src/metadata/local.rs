//! A metadata store without a quorum: the image as JSON, replaced atomically on every
//! command. Request handler tests run against it; brokers use `quorum::Quorum`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, watch};

use super::image::{ClusterMetadata, MetadataCommand, MetadataError};
use super::store::MetadataStore;
use crate::log::checkpoint::write_atomic;

const FILE: &str = "metadata.json";

#[derive(Debug, thiserror::Error)]
pub enum LocalStoreError {
    #[error("cannot read metadata file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata file {path} is corrupt: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create metadata directory {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct LocalMetadataStore {
    path: PathBuf,
    tx: watch::Sender<Arc<ClusterMetadata>>,
    /// Serialises writers so commands apply in one order.
    write: Mutex<()>,
}

impl LocalMetadataStore {
    /// Opens the store in `dir`. Returns `None` for the image when the directory holds
    /// none yet, so the caller decides whether a fresh cluster may be initialised.
    pub fn load(dir: &Path) -> Result<Option<ClusterMetadata>, LocalStoreError> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LocalStoreError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let mut md: ClusterMetadata =
            serde_json::from_slice(&bytes).map_err(|source| LocalStoreError::Corrupt {
                path: path.display().to_string(),
                source,
            })?;
        md.reindex();
        Ok(Some(md))
    }

    pub fn new(dir: &Path, image: ClusterMetadata) -> Result<Self, LocalStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| LocalStoreError::Create {
            path: dir.display().to_string(),
            source,
        })?;
        let (tx, _) = watch::channel(Arc::new(image));
        Ok(Self {
            path: dir.join(FILE),
            tx,
            write: Mutex::new(()),
        })
    }

    async fn apply(&self, cmd: MetadataCommand) -> Result<Arc<ClusterMetadata>, MetadataError> {
        let _guard = self.write.lock().await;
        let mut next = (*self.tx.borrow().clone()).clone();
        next.apply(&cmd)?;
        let json =
            serde_json::to_vec_pretty(&next).map_err(|e| MetadataError::Storage(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &json))
            .await
            .map_err(|e| MetadataError::Storage(e.to_string()))?
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        let next = Arc::new(next);
        self.tx.send_replace(next.clone());
        Ok(next)
    }
}

impl MetadataStore for LocalMetadataStore {
    fn current(&self) -> Arc<ClusterMetadata> {
        self.tx.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.tx.subscribe()
    }

    fn submit(
        &self,
        cmd: MetadataCommand,
    ) -> BoxFuture<'_, Result<Arc<ClusterMetadata>, MetadataError>> {
        Box::pin(self.apply(cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::BrokerRegistration;

    #[tokio::test]
    async fn commands_persist_across_reload() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalMetadataStore::load(dir.path()).unwrap().is_none());
        let store =
            LocalMetadataStore::new(dir.path(), ClusterMetadata::new("cid".into())).unwrap();
        let rx = store.subscribe();
        store
            .submit(MetadataCommand::RegisterBroker(BrokerRegistration {
                id: 3,
                endpoints: vec![],
                rack: None,
                incarnation: uuid::Uuid::nil(),
                fenced: false,
            }))
            .await
            .unwrap();
        assert!(rx.has_changed().unwrap());
        assert!(
            store
                .submit(MetadataCommand::DeleteTopic { name: "x".into() })
                .await
                .is_err()
        );
        let back = LocalMetadataStore::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.cluster_id, "cid");
        assert!(back.brokers.contains_key(&3));
        assert_eq!(back.offset, 1);
    }
}
