//! Small state files written atomically (write, fsync, rename, fsync directory), in
//! Kafka's text layouts so operators can read them with `cat`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
}

fn io_err(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CheckpointError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        f.write_all(contents).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir).map_err(|e| io_err(dir, e))?;
    Ok(())
}

/// Makes a directory's entries (new, renamed or deleted files) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `topic partition offset` lines under a version and a count, as Kafka's
/// `recovery-point-offset-checkpoint` and friends.
pub fn write_offsets(
    path: &Path,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), CheckpointError> {
    let mut s = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        s.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomic(path, s.as_bytes())
}

pub fn read_offsets(path: &Path) -> Result<BTreeMap<(String, i32), i64>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let malformed = |reason: &str| CheckpointError::Malformed {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(malformed("unknown version"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| malformed("missing entry count"))?;
    let mut out = BTreeMap::new();
    for line in lines.by_ref().take(count) {
        let mut parts = line.rsplitn(3, ' ');
        let (Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("entry is not 'topic partition offset'"));
        };
        let offset: i64 = offset.parse().map_err(|_| malformed("bad offset"))?;
        let partition: i32 = partition.parse().map_err(|_| malformed("bad partition"))?;
        out.insert((topic.to_string(), partition), offset);
    }
    if out.len() != count {
        return Err(malformed("fewer entries than the count says"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("recovery-point-offset-checkpoint");
        assert!(read_offsets(&p).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(("orders".to_string(), 0), 42);
        m.insert(("a.b_c".to_string(), 11), 7);
        write_offsets(&p, &m).unwrap();
        assert_eq!(read_offsets(&p).unwrap(), m);
        std::fs::write(&p, "0\n3\nx 0 1\n").unwrap();
        assert!(read_offsets(&p).is_err());
    }

    #[test]
    fn atomic_write_with_a_bare_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir.path()).unwrap();
        let r = write_atomic(Path::new("bare.json"), b"{}");
        std::env::set_current_dir(old).unwrap();
        r.unwrap();
        assert_eq!(std::fs::read(dir.path().join("bare.json")).unwrap(), b"{}");
    }
}
