//! Where a partition's tiered data lives in the bucket.
//!
//! `<root>/<cluster id>/<hh>/<topic>-<topic id>/<partition>/`, where `hh` is a hash of the
//! topic id: object stores split request load by key prefix, so topics spread over 256
//! prefixes instead of piling onto one, while a cluster, a topic and a partition each
//! stay one listable prefix. The topic id in the path keeps a re-created topic of the
//! same name apart from its predecessor.

use object_store::path::Path;
use uuid::Uuid;

/// The manifest object of a partition: the source of truth for its remote segments.
pub const MANIFEST: &str = "manifest.json";

/// A hosted partition as the remote tier names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: std::sync::Arc<str>,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

fn hash_prefix(key: &PartitionKey) -> String {
    format!("{:02x}", crc32c::crc32c(key.topic_id.as_bytes()) & 0xff)
}

/// The prefix holding every object of one partition.
pub fn partition_prefix(root: &Path, cluster_id: &str, key: &PartitionKey) -> Path {
    let mut parts: Vec<String> = root.parts().map(|p| p.as_ref().to_string()).collect();
    parts.push(cluster_id.to_string());
    parts.push(hash_prefix(key));
    parts.push(format!("{}-{}", key.topic, key.topic_id.simple()));
    parts.push(key.partition.to_string());
    Path::from_iter(parts)
}

/// `<prefix>/<base offset, 20 digits>-<upload id>.<ext>`: the upload id makes every
/// attempt's objects distinct, so a retried or abandoned upload never overwrites an
/// object a manifest names. Keys use 64 bits of the id (unique enough per partition and
/// base offset), keeping them short: some S3-compatible stores derive file names from
/// keys and hit file name limits.
pub fn segment_object(prefix: &Path, base_offset: i64, id: Uuid, ext: &str) -> Path {
    prefix.child(format!("{base_offset:020}-{}.{ext}", short_id(id)))
}

/// The part of an upload id that appears in object keys.
pub fn short_id(id: Uuid) -> String {
    format!("{:016x}", id.as_u64_pair().0)
}

pub fn manifest_object(prefix: &Path) -> Path {
    prefix.child(MANIFEST)
}

/// The base offset and (short) upload id of a segment object's file name, if it is one.
pub fn parse_segment_object(name: &str) -> Option<(i64, String)> {
    let (stem, _ext) = name.rsplit_once('.')?;
    let (base, id) = stem.split_once('-')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Some((base.parse().ok()?, id.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable_and_parseable() {
        let key = PartitionKey {
            topic: "orders.v1".into(),
            topic_id: Uuid::from_u128(0x1234),
            partition: 7,
        };
        let root = Path::from("tier/prod");
        let prefix = partition_prefix(&root, "clu", &key);
        let s = prefix.to_string();
        assert!(s.starts_with("tier/prod/clu/"), "{s}");
        assert!(
            s.ends_with("/orders.v1-00000000000000000000000000001234/7"),
            "{s}"
        );
        // Deterministic: the same partition always maps to the same prefix.
        assert_eq!(prefix, partition_prefix(&root, "clu", &key));
        // Partitions of one topic share the topic's prefix.
        let other = PartitionKey {
            partition: 8,
            ..key.clone()
        };
        let topic_prefix = |p: &Path| p.to_string().rsplit_once('/').unwrap().0.to_string();
        assert_eq!(
            topic_prefix(&partition_prefix(&root, "clu", &other)),
            topic_prefix(&prefix)
        );
        let id = Uuid::new_v4();
        let obj = segment_object(&prefix, 42, id, "log");
        let name = obj.filename().unwrap();
        assert_eq!(parse_segment_object(name), Some((42, short_id(id))));
        assert!(name.len() < 42, "{name}");
        assert_eq!(parse_segment_object(MANIFEST), None);
        assert_eq!(
            manifest_object(&prefix).to_string(),
            format!("{s}/manifest.json")
        );
        // An empty root (a local directory store) has no leading separator.
        assert!(
            partition_prefix(&Path::default(), "clu", &key)
                .to_string()
                .starts_with("clu/")
        );
    }

    #[test]
    fn hash_prefixes_spread() {
        let mut seen = std::collections::HashSet::new();
        for p in 0..64 {
            let key = PartitionKey {
                topic: "t".into(),
                topic_id: Uuid::new_v4(),
                partition: p,
            };
            seen.insert(hash_prefix(&key));
        }
        // 64 random topic ids over 256 prefixes: ~57 distinct expected; 40 is far below.
        assert!(
            seen.len() > 40,
            "64 topics landed on {} prefixes",
            seen.len()
        );
    }
}
