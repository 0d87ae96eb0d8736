//! The Raft log of the metadata quorum on local disk.
//!
//! Entries are JSON lines appended to `log.jsonl` and fsynced before Raft counts them as
//! persisted; the vote, the commit point and the purge point are small files replaced
//! atomically. The metadata log is small (a snapshot replaces its prefix every
//! `metadata.log.snapshot.interval.entries`), so truncation and purging rewrite the file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::log::checkpoint::write_atomic;

const LOG_FILE: &str = "log.jsonl";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";

#[derive(Debug, Default)]
struct LogData {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

#[derive(Debug, Clone)]
pub struct LogStore {
    dir: PathBuf,
    data: Arc<Mutex<LogData>>,
    /// Append handle of `log.jsonl`; writes are serialised by openraft (one caller).
    file: Arc<Mutex<Option<Arc<std::fs::File>>>>,
}

fn io_error(e: impl std::error::Error + 'static) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is corrupt: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io_error)?;
    write_atomic(path, &bytes).map_err(io_error)
}

fn encode(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(io_error)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

fn open_append(path: &Path) -> std::io::Result<Arc<std::fs::File>> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Arc::new)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`. A torn last line — a write the crash
    /// interrupted, so never acknowledged — is cut off.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut data = LogData {
            vote: read_json(&dir.join(VOTE_FILE))?,
            committed: read_json(&dir.join(COMMITTED_FILE))?,
            last_purged: read_json(&dir.join(PURGED_FILE))?,
            ..Default::default()
        };
        let path = dir.join(LOG_FILE);
        let raw = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut clean = true;
        let purged_index = data.last_purged.map(|l| l.index);
        let lines: Vec<&[u8]> = raw
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
                // Only the last line can be a write cut by a crash (never acknowledged);
                // damage before it would drop entries that may be committed.
                if i + 1 < lines.len() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is corrupt at entry {} of {}; restore it or remove this broker's metadata directory to copy it from the quorum",
                            path.display(),
                            i + 1,
                            lines.len()
                        ),
                    ));
                }
                tracing::warn!(path = %path.display(), "metadata log ends with a torn entry; cutting it off");
                clean = false;
                break;
            };
            let index = entry.get_log_id().index;
            if purged_index.is_some_and(|p| index <= p) {
                continue;
            }
            if let Some((last, _)) = data.entries.last_key_value()
                && *last + 1 != index
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} has a gap after entry {last} (next is {index})",
                        path.display()
                    ),
                ));
            }
            data.entries.insert(index, entry);
        }
        if !clean {
            let entries: Vec<Entry> = data.entries.values().cloned().collect();
            write_atomic(&path, &encode(&entries)?).map_err(io_error)?;
        }
        let file = open_append(&path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            data: Arc::new(Mutex::new(data)),
            file: Arc::new(Mutex::new(Some(file))),
        })
    }

    /// Whether this node has never been part of a quorum (nothing voted, logged or purged).
    pub fn is_pristine(&self) -> bool {
        let d = self.data.lock();
        d.vote.is_none() && d.entries.is_empty() && d.last_purged.is_none()
    }

    async fn rewrite(&self) -> std::io::Result<()> {
        let entries: Vec<Entry> = self.data.lock().entries.values().cloned().collect();
        let path = self.dir.join(LOG_FILE);
        let file = tokio::task::spawn_blocking(move || {
            write_atomic(&path, &encode(&entries)?).map_err(io_error)?;
            open_append(&path)
        })
        .await
        .map_err(io_error)??;
        *self.file.lock() = Some(file);
        Ok(())
    }

    async fn persist<T: Serialize + Send + 'static>(
        &self,
        name: &'static str,
        value: T,
    ) -> std::io::Result<()> {
        let path = self.dir.join(name);
        tokio::task::spawn_blocking(move || write_json(&path, &value))
            .await
            .map_err(io_error)?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .data
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.data.lock();
        let last = d
            .entries
            .last_key_value()
            .map(|(_, e)| *e.get_log_id())
            .or(d.last_purged);
        Ok(LogState {
            last_purged_log_id: d.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.persist(VOTE_FILE, *vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.data.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.data.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.persist(COMMITTED_FILE, committed)
            .await
            .map_err(|e| StorageIOError::write(&e))?;
        self.data.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.data.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let buf = encode(&entries).map_err(|e| StorageIOError::write_logs(&e))?;
        {
            let mut d = self.data.lock();
            for e in entries {
                d.entries.insert(e.get_log_id().index, e);
            }
        }
        let file = self.file.lock().clone();
        let result = match file {
            Some(file) => tokio::task::spawn_blocking(move || {
                (&*file).write_all(&buf)?;
                file.sync_data()
            })
            .await
            .unwrap_or_else(|e| Err(io_error(e))),
            None => Err(std::io::Error::other("metadata log file is not open")),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot write the metadata log");
        }
        callback.log_io_completed(result);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.data.lock().entries.split_off(&log_id.index);
        self.rewrite()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.persist(PURGED_FILE, log_id)
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        {
            let mut d = self.data.lock();
            d.last_purged = Some(log_id);
            let keep = d.entries.split_off(&(log_id.index + 1));
            d.entries = keep;
        }
        self.rewrite()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
