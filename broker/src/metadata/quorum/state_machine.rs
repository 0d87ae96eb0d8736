//! The metadata state machine: applies committed commands to the [`ClusterMetadata`]
//! image and publishes every new image. The image itself is persisted as snapshots
//! (`snapshot.json`); on restart Raft replays the committed log after the snapshot.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{
    CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::log::checkpoint::write_atomic;
use crate::metadata::image::ClusterMetadata;

const SNAPSHOT_FILE: &str = "snapshot.json";

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    image: ClusterMetadata,
}

#[derive(Debug)]
struct State {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: ClusterMetadata,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    images: Arc<watch::Sender<Arc<ClusterMetadata>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotLoadError {
    #[error("cannot read metadata snapshot {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata snapshot {path} is corrupt: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn storage_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl StateMachine {
    /// Loads the last snapshot from `dir`, or starts from an empty image of `cluster_id`.
    pub fn open(dir: &Path, cluster_id: &str) -> Result<Self, SnapshotLoadError> {
        let path = dir.join(SNAPSHOT_FILE);
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<SnapshotFile>(&bytes).map_err(
                |source| SnapshotLoadError::Corrupt {
                    path: path.display().to_string(),
                    source,
                },
            )?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SnapshotLoadError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let state = match loaded {
            Some(SnapshotFile { meta, mut image }) => {
                image.reindex();
                let data =
                    serde_json::to_vec(&image).map_err(|source| SnapshotLoadError::Corrupt {
                        path: path.display().to_string(),
                        source,
                    })?;
                State {
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                    image,
                    snapshot: Some((meta, data)),
                }
            }
            None => State {
                last_applied: None,
                membership: StoredMembership::default(),
                image: ClusterMetadata::new(cluster_id.to_string()),
                snapshot: None,
            },
        };
        let (tx, _) = watch::channel(Arc::new(state.image.clone()));
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
            images: Arc::new(tx),
        })
    }

    pub fn images(&self) -> Arc<watch::Sender<Arc<ClusterMetadata>>> {
        self.images.clone()
    }

    pub fn has_snapshot(&self) -> bool {
        self.state.lock().snapshot.is_some()
    }

    async fn save(&self, meta: SnapshotMeta, image: ClusterMetadata) -> std::io::Result<()> {
        let path = self.dir.join(SNAPSHOT_FILE);
        tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&SnapshotFile { meta, image }).map_err(storage_err)?;
            write_atomic(&path, &bytes).map_err(storage_err)
        })
        .await
        .map_err(storage_err)?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, image, data) = {
            let s = self.state.lock();
            let data = serde_json::to_vec(&s.image)
                .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let id = match s.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "0".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.membership.clone(),
                snapshot_id: id,
            };
            (meta, s.image.clone(), data)
        };
        self.save(meta.clone(), image)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.state.lock().snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.state.lock();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut changed = false;
        let mut s = self.state.lock();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(CommandResult(Ok(()))),
                EntryPayload::Normal(cmd) => {
                    let r = s.image.apply(&cmd);
                    if let Err(e) = &r {
                        tracing::debug!(error = %e, ?cmd, "metadata command refused");
                    }
                    changed |= r.is_ok();
                    results.push(CommandResult(r));
                }
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    results.push(CommandResult(Ok(())));
                }
            }
        }
        if changed {
            self.images.send_replace(Arc::new(s.image.clone()));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut image: ClusterMetadata = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        image.reindex();
        self.save(meta.clone(), image.clone())
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        {
            let mut s = self.state.lock();
            s.last_applied = meta.last_log_id;
            s.membership = meta.last_membership.clone();
            s.image = image.clone();
            s.snapshot = Some((meta.clone(), data));
        }
        self.images.send_replace(Arc::new(image));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .state
            .lock()
            .snapshot
            .clone()
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
    }
}
