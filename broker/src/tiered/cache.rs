//! Caches for remote reads: ranged chunks of segment objects on local disk (bounded,
//! least recently used out first) with the most recent few also in memory, and segment
//! indexes in memory.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use parking_lot::Mutex;

#[derive(Debug)]
struct DiskEntry {
    file: PathBuf,
    size: u64,
    last_used: u64,
}

#[derive(Debug, Default)]
struct DiskState {
    entries: HashMap<String, DiskEntry>,
    used: u64,
    tick: u64,
    next_file: u64,
}

/// Chunks that fit in memory at once: a sequential consumer re-reads the chunk it is in
/// for every fetch, so the last few are kept as `Bytes`.
const HOT_CHUNKS: usize = 8;

#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    capacity: u64,
    disk: Mutex<DiskState>,
    hot: Mutex<VecDeque<(String, Bytes)>>,
}

impl ChunkCache {
    /// Starts empty: whatever an earlier run left in `dir` is removed.
    pub fn new(dir: &Path, capacity: u64) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            capacity,
            disk: Mutex::new(DiskState::default()),
            hot: Mutex::new(VecDeque::new()),
        })
    }

    fn remember_hot(&self, key: &str, data: &Bytes) {
        let mut hot = self.hot.lock();
        if hot.iter().any(|(k, _)| k == key) {
            return;
        }
        if hot.len() >= HOT_CHUNKS {
            hot.pop_front();
        }
        hot.push_back((key.to_string(), data.clone()));
    }

    /// A cached chunk. Blocking (may read a file): call from a blocking context.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let on_disk = {
            let mut d = self.disk.lock();
            d.tick += 1;
            let tick = d.tick;
            d.entries.get_mut(key).map(|e| {
                e.last_used = tick;
                (e.file.clone(), e.size)
            })
        };
        if let Some((_, b)) = self.hot.lock().iter().find(|(k, _)| k == key) {
            return Some(b.clone());
        }
        let (file, size) = on_disk?;
        match std::fs::read(&file) {
            Ok(data) if data.len() as u64 == size => {
                let data = Bytes::from(data);
                self.remember_hot(key, &data);
                Some(data)
            }
            // Evicted between lookup and read, or damaged: treat as a miss.
            _ => {
                self.forget(key);
                None
            }
        }
    }

    /// Whether a chunk is cached, without reading it.
    pub fn contains(&self, key: &str) -> bool {
        self.hot.lock().iter().any(|(k, _)| k == key) || self.disk.lock().entries.contains_key(key)
    }

    fn forget(&self, key: &str) {
        let mut d = self.disk.lock();
        if let Some(e) = d.entries.remove(key) {
            d.used -= e.size;
            let _ = std::fs::remove_file(&e.file);
        }
    }

    /// Stores a downloaded chunk, evicting the least recently used ones beyond capacity.
    /// Blocking.
    pub fn insert(&self, key: &str, data: &Bytes) {
        self.remember_hot(key, data);
        let size = data.len() as u64;
        if size > self.capacity {
            return;
        }
        let file = {
            let mut d = self.disk.lock();
            if d.entries.contains_key(key) {
                return;
            }
            d.next_file += 1;
            self.dir.join(format!("{:016x}.chunk", d.next_file))
        };
        let tmp = file.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, &file)) {
            tracing::warn!(file = %file.display(), error = %e, "cannot write remote chunk cache file; serving uncached");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut doomed = Vec::new();
        {
            let mut d = self.disk.lock();
            d.tick += 1;
            let tick = d.tick;
            d.used += size;
            d.entries.insert(
                key.to_string(),
                DiskEntry {
                    file,
                    size,
                    last_used: tick,
                },
            );
            while d.used > self.capacity {
                let Some(oldest) = d
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(e) = d.entries.remove(&oldest) {
                    d.used -= e.size;
                    doomed.push(e.file);
                }
            }
        }
        for f in doomed {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Drops every chunk of objects under `prefix` (their segment left the bucket).
    pub fn invalidate_prefix(&self, prefix: &str) {
        self.hot.lock().retain(|(k, _)| !k.starts_with(prefix));
        let keys: Vec<String> = self
            .disk
            .lock()
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            self.forget(&k);
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.disk.lock().used
    }
}

#[derive(Debug, Default)]
struct IndexState {
    /// key -> (index bytes, last use)
    entries: HashMap<String, (Bytes, u64)>,
    used: u64,
    tick: u64,
}

/// Offset and time indexes of remote segments, in memory, bounded by total bytes.
#[derive(Debug)]
pub struct IndexCache {
    capacity: u64,
    state: Mutex<IndexState>,
}

impl IndexCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::new(IndexState::default()),
        }
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        let mut s = self.state.lock();
        s.tick += 1;
        let tick = s.tick;
        let e = s.entries.get_mut(key)?;
        e.1 = tick;
        Some(e.0.clone())
    }

    pub fn insert(&self, key: &str, data: Bytes) {
        let size = data.len() as u64;
        if size > self.capacity {
            return;
        }
        let mut s = self.state.lock();
        s.tick += 1;
        let tick = s.tick;
        if let Some(old) = s.entries.insert(key.to_string(), (data, tick)) {
            s.used -= old.0.len() as u64;
        }
        s.used += size;
        while s.used > self.capacity {
            let Some(oldest) = s
                .entries
                .iter()
                .min_by_key(|(_, e)| e.1)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = s.entries.remove(&oldest) {
                s.used -= e.0.len() as u64;
            }
        }
    }

    pub fn invalidate_prefix(&self, prefix: &str) {
        let mut s = self.state.lock();
        let doomed: Vec<String> = s
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in doomed {
            if let Some(e) = s.entries.remove(&k) {
                s.used -= e.0.len() as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_cache_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(&dir.path().join("c"), 2500).unwrap();
        let chunk = |b: u8| Bytes::from(vec![b; 1000]);
        cache.insert("a/1", &chunk(1));
        cache.insert("a/2", &chunk(2));
        assert_eq!(cache.get("a/1").unwrap()[0], 1); // a/1 is now more recent than a/2
        cache.insert("b/3", &chunk(3));
        assert_eq!(cache.used_bytes(), 2000);
        assert!(cache.disk.lock().entries.contains_key("a/1"));
        assert!(!cache.disk.lock().entries.contains_key("a/2"));
        // Evicted from disk but still among the hot chunks in memory.
        assert!(cache.get("a/2").is_some());
        cache.invalidate_prefix("a/");
        assert!(!cache.contains("a/1"));
        assert!(cache.contains("b/3"));
        assert_eq!(std::fs::read_dir(dir.path().join("c")).unwrap().count(), 1);
    }

    #[test]
    fn index_cache_is_bounded() {
        let c = IndexCache::new(100);
        c.insert("x", Bytes::from(vec![0; 60]));
        c.insert("y", Bytes::from(vec![0; 60]));
        assert!(c.get("x").is_none());
        assert!(c.get("y").is_some());
        c.invalidate_prefix("y");
        assert!(c.get("y").is_none());
    }
}
