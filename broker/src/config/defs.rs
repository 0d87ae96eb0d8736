//! Every setting Sluice understands, under its Kafka name. This one table drives parsing
//! and validation, DescribeConfigs answers, and `docs/configuration.md`.

/// Kafka's config types, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
    Password,
}

impl ConfigType {
    /// The `config_type` code of DescribeConfigs responses.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Password => 9,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "boolean",
            ConfigType::String => "string",
            ConfigType::Int => "int",
            ConfigType::Long => "long",
            ConfigType::Double => "double",
            ConfigType::List => "list",
            ConfigType::Password => "password",
        }
    }
}

/// Extra constraints on a value beyond its type.
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    None,
    AtLeast(i64),
    /// One of these strings (case-sensitive, as in Kafka).
    OneOf(&'static [&'static str]),
    /// A list whose items are all from this set.
    ListOf(&'static [&'static str]),
    /// A number between 0 and 1 inclusive.
    Ratio,
}

#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    /// `None` is Kafka's `null`.
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// Can be changed at runtime with AlterConfigs on the broker (cluster-wide or per
    /// broker) without a restart.
    pub dynamic: bool,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

const fn def(
    name: &'static str,
    ty: ConfigType,
    default: Option<&'static str>,
    validator: Validator,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default,
        validator,
        dynamic: false,
        doc,
    }
}

const fn dynamic(d: ConfigDef) -> ConfigDef {
    ConfigDef { dynamic: true, ..d }
}

use ConfigType as T;

/// Broker settings. Those a topic setting falls back to are dynamic, as in Kafka.
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    def(
        "node.id",
        T::Int,
        Some("0"),
        Validator::AtLeast(0),
        "Id of this broker in the cluster. `broker.id` is accepted as a synonym. When not set, the ordinal at the end of the hostname (`sluice-2` → 2, as in a StatefulSet) is used, else 0.",
    ),
    def(
        "cluster.id",
        T::String,
        None,
        Validator::None,
        "Id shared by every broker of the cluster (Kafka's `kafka-storage format --cluster-id`). Required when `controller.quorum.voters` names another broker; a single broker generates one on first start.",
    ),
    def(
        "controller.quorum.voters",
        T::List,
        None,
        Validator::None,
        "The metadata quorum's voters as `id@host:port` (their `internal.listener`), comma separated, identical on every broker. Other brokers join as non-voting learners. Empty: this broker is the only voter.",
    ),
    def(
        "broker.heartbeat.interval.ms",
        T::Int,
        Some("2000"),
        Validator::AtLeast(10),
        "How often a broker tells the controller it is alive.",
    ),
    def(
        "broker.session.timeout.ms",
        T::Int,
        Some("9000"),
        Validator::AtLeast(100),
        "A broker whose heartbeats stop for this long is fenced: its partitions get new leaders from their ISR.",
    ),
    def(
        "metadata.election.timeout.ms",
        T::Int,
        Some("1500"),
        Validator::AtLeast(50),
        "Metadata quorum: a voter that hears nothing from the leader for this long (randomised up to twice it) starts an election.",
    ),
    def(
        "metadata.log.snapshot.interval.entries",
        T::Int,
        Some("5000"),
        Validator::AtLeast(1),
        "Metadata quorum: take a snapshot of the metadata image (and drop the log before it) after this many new entries.",
    ),
    def(
        "auto.leader.rebalance.enable",
        T::Boolean,
        Some("true"),
        Validator::None,
        "The controller moves leadership back to each partition's preferred (first) replica when it is in sync, every `leader.imbalance.check.interval.seconds`.",
    ),
    def(
        "leader.imbalance.check.interval.seconds",
        T::Long,
        Some("300"),
        Validator::AtLeast(1),
        "How often the controller checks for partitions not led by their preferred replica.",
    ),
    def(
        "controlled.shutdown.enable",
        T::Boolean,
        Some("true"),
        Validator::None,
        "On SIGTERM, move partition leadership to other in-sync replicas before stopping.",
    ),
    def(
        "inter.broker.listener.name",
        T::String,
        None,
        Validator::None,
        "Listener followers fetch from. Defaults to the first of `listeners`.",
    ),
    def(
        "replica.lag.time.max.ms",
        T::Long,
        Some("30000"),
        Validator::AtLeast(1),
        "A follower that has not caught up with the leader's log end for this long is removed from the ISR.",
    ),
    def(
        "replica.fetch.max.bytes",
        T::Int,
        Some("1048576"),
        Validator::AtLeast(1),
        "Bytes a follower asks for per partition in one fetch (at least one batch is always returned).",
    ),
    def(
        "replica.fetch.response.max.bytes",
        T::Int,
        Some("10485760"),
        Validator::AtLeast(1),
        "Bytes a follower asks for in one fetch across partitions.",
    ),
    def(
        "replica.fetch.wait.max.ms",
        T::Int,
        Some("500"),
        Validator::AtLeast(0),
        "How long the leader holds a follower's fetch when there is nothing new.",
    ),
    def(
        "replica.fetch.backoff.ms",
        T::Int,
        Some("1000"),
        Validator::AtLeast(0),
        "Pause after a failed follower fetch before retrying.",
    ),
    def(
        "listeners",
        T::List,
        Some("PLAINTEXT://:9092"),
        Validator::None,
        "Kafka listeners as `NAME://host:port`, comma separated. An empty host binds every interface; port 0 picks a free port.",
    ),
    def(
        "advertised.listeners",
        T::List,
        None,
        Validator::None,
        "Addresses given to clients in Metadata responses, per listener name. Defaults to `listeners`, with the machine's hostname for an empty or wildcard host.",
    ),
    def(
        "listener.security.protocol.map",
        T::List,
        Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
        Validator::None,
        "Security protocol of each listener as `NAME:PROTOCOL`: PLAINTEXT, SSL (TLS, optionally with client certificates), SASL_PLAINTEXT or SASL_SSL. Settings below can be given per listener as `listener.name.<lower-case name>.<setting>`.",
    ),
    def(
        "ssl.keystore.type",
        T::String,
        Some("PEM"),
        Validator::OneOf(&["PEM"]),
        "Only PEM files are read (JKS/PKCS12 keystores are not).",
    ),
    def(
        "ssl.keystore.location",
        T::String,
        None,
        Validator::None,
        "PEM file holding the listener's private key and certificate chain. Re-read when it changes (cert-manager rotation) without a restart.",
    ),
    def(
        "ssl.certificate.location",
        T::String,
        None,
        Validator::None,
        "PEM certificate chain (e.g. a Secret's `tls.crt`), used with `ssl.key.location` instead of `ssl.keystore.location`. Re-read when it changes.",
    ),
    def(
        "ssl.key.location",
        T::String,
        None,
        Validator::None,
        "Unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1; e.g. a Secret's `tls.key`) for `ssl.certificate.location`.",
    ),
    def(
        "ssl.truststore.type",
        T::String,
        Some("PEM"),
        Validator::OneOf(&["PEM"]),
        "Only PEM files are read.",
    ),
    def(
        "ssl.truststore.location",
        T::String,
        None,
        Validator::None,
        "PEM bundle of CA certificates that client certificates (mutual TLS) and, for the inter-broker listener, other brokers' certificates must chain to. Re-read when it changes.",
    ),
    def(
        "ssl.client.auth",
        T::String,
        Some("none"),
        Validator::OneOf(&["none", "requested", "required"]),
        "Client certificates: `required` refuses clients without a certificate from `ssl.truststore.location`; `requested` verifies one if sent. On an SSL listener an authenticated certificate's subject is the principal.",
    ),
    def(
        "ssl.enabled.protocols",
        T::List,
        Some("TLSv1.2,TLSv1.3"),
        Validator::ListOf(&["TLSv1.2", "TLSv1.3"]),
        "TLS versions accepted.",
    ),
    def(
        "ssl.principal.mapping.rules",
        T::String,
        Some("DEFAULT"),
        Validator::None,
        "Rules mapping a client certificate's distinguished name (RFC 2253, e.g. `CN=alice,O=Acme`) to a user name, as in Kafka: `RULE:pattern/replacement/[LU]` entries separated by commas, tried in order, and `DEFAULT` (the whole DN).",
    ),
    def(
        "ssl.endpoint.identification.algorithm",
        T::String,
        Some("https"),
        Validator::OneOf(&["https", ""]),
        "`https`: a broker connecting to another over an SSL inter-broker listener checks the host name against its certificate; empty: the chain alone is checked.",
    ),
    def(
        "sasl.enabled.mechanisms",
        T::List,
        Some("SCRAM-SHA-256,SCRAM-SHA-512"),
        Validator::ListOf(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
        "SASL mechanisms offered on SASL listeners. PLAIN checks the password against the user's stored SCRAM credential, so no password is stored in clear; use PLAIN only over TLS.",
    ),
    def(
        "connections.max.reauth.ms",
        T::Long,
        Some("0"),
        Validator::AtLeast(0),
        "When positive, SASL sessions last this long (KIP-368): clients re-authenticate on the same connection before it ends, and a connection whose session expired is closed. 0: sessions last as long as the connection.",
    ),
    def(
        "authorizer.class.name",
        T::String,
        Some(""),
        Validator::OneOf(&[
            "",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "kafka.security.authorizer.AclAuthorizer",
        ]),
        "Set to Kafka's `org.apache.kafka.metadata.authorizer.StandardAuthorizer` (or `kafka.security.authorizer.AclAuthorizer`) to enforce ACLs on every request. Empty: everyone may do everything.",
    ),
    def(
        "super.users",
        T::String,
        None,
        Validator::None,
        "Principals allowed everything whatever the ACLs say, separated by semicolons: `User:admin;User:CN=broker-0`.",
    ),
    def(
        "allow.everyone.if.no.acl.found",
        T::Boolean,
        Some("false"),
        Validator::None,
        "With an authorizer: whether a resource without any ACL is open to everyone.",
    ),
    def(
        "quota.window.num",
        T::Int,
        Some("11"),
        Validator::AtLeast(1),
        "Samples kept to measure client rates against their quotas.",
    ),
    def(
        "quota.window.size.seconds",
        T::Int,
        Some("1"),
        Validator::AtLeast(1),
        "Length of one quota sample.",
    ),
    def(
        "internal.listener.security.protocol",
        T::String,
        Some("PLAINTEXT"),
        Validator::OneOf(&["PLAINTEXT", "SSL"]),
        "SSL protects the internal gRPC port (metadata quorum, admin API) with mutual TLS, using `internal.listener.ssl.*` (e.g. `internal.listener.ssl.truststore.location`, falling back to `ssl.*`); peers and admin clients need a certificate from the truststore.",
    ),
    def(
        "log.dirs",
        T::List,
        Some("sluice-data"),
        Validator::None,
        "Directories holding partition logs; new partitions go to the directory with the fewest. `log.dir` is accepted as a synonym.",
    ),
    def(
        "http.listener",
        T::String,
        Some("0.0.0.0:9644"),
        Validator::None,
        "Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`. Port 0 picks a free port.",
    ),
    def(
        "internal.listener",
        T::String,
        Some("0.0.0.0:9093"),
        Validator::None,
        "Address of the internal gRPC server: the admin API used by the operator (and later the metadata quorum and replication control). Keep it off client networks. Port 0 picks a free port.",
    ),
    def(
        "broker.rack",
        T::String,
        None,
        Validator::None,
        "Rack (availability zone) of this broker, reported in Metadata.",
    ),
    def(
        "num.partitions",
        T::Int,
        Some("1"),
        Validator::AtLeast(1),
        "Partitions of topics created without an explicit count (auto-created, or CreateTopics with -1).",
    ),
    def(
        "default.replication.factor",
        T::Int,
        Some("1"),
        Validator::AtLeast(1),
        "Replication factor of topics created without an explicit one.",
    ),
    def(
        "max.broker.partitions",
        T::Int,
        Some("10000"),
        Validator::AtLeast(1),
        "Most partition replicas one broker may host (KIP-578's name). CreateTopics and CreatePartitions beyond it fail with POLICY_VIOLATION. Each partition holds at least one open file.",
    ),
    def(
        "auto.create.topics.enable",
        T::Boolean,
        Some("true"),
        Validator::None,
        "Create a topic when a client asks Metadata for a topic that does not exist (and the client allows it).",
    ),
    def(
        "delete.topic.enable",
        T::Boolean,
        Some("true"),
        Validator::None,
        "Allow DeleteTopics. When false, DeleteTopics fails with TOPIC_DELETION_DISABLED.",
    ),
    def(
        "socket.request.max.bytes",
        T::Int,
        Some("104857600"),
        Validator::AtLeast(1024),
        "Largest request frame accepted; a larger size prefix closes the connection.",
    ),
    def(
        "fetch.max.bytes",
        T::Int,
        Some("57671680"),
        Validator::AtLeast(1024),
        "Most record bytes returned by one Fetch, whatever the client asks for (the first batch is always returned whole).",
    ),
    def(
        "connections.max.idle.ms",
        T::Long,
        Some("600000"),
        Validator::AtLeast(1),
        "Close connections that sent nothing for this long.",
    ),
    def(
        "max.connections",
        T::Int,
        Some("2147483647"),
        Validator::AtLeast(1),
        "Most client connections open at once; further connections are closed on accept.",
    ),
    def(
        "shutdown.timeout.ms",
        T::Long,
        Some("30000"),
        Validator::AtLeast(0),
        "On SIGTERM, how long in-flight requests may take to finish before logs are flushed and the broker exits.",
    ),
    def(
        "log.retention.check.interval.ms",
        T::Long,
        Some("300000"),
        Validator::AtLeast(1),
        "How often retention (`retention.ms`, `retention.bytes`) is applied.",
    ),
    def(
        "log.flush.scheduler.interval.ms",
        T::Long,
        Some("1000"),
        Validator::AtLeast(1),
        "How often the flusher checks `flush.ms` and fsyncs freshly rolled segments.",
    ),
    def(
        "log.flush.offset.checkpoint.interval.ms",
        T::Long,
        Some("60000"),
        Validator::AtLeast(1),
        "How often recovery points, log start offsets and high watermarks are checkpointed.",
    ),
    def(
        "num.recovery.threads.per.data.dir",
        T::Int,
        Some("2"),
        Validator::AtLeast(1),
        "Threads per log directory that open and recover partitions at startup.",
    ),
    def(
        "log.retention.hours",
        T::Int,
        Some("168"),
        Validator::None,
        "Default `retention.ms` in hours, used when neither `log.retention.ms` nor `log.retention.minutes` is set.",
    ),
    def(
        "log.retention.minutes",
        T::Int,
        None,
        Validator::None,
        "Default `retention.ms` in minutes, used when `log.retention.ms` is not set.",
    ),
    def(
        "log.roll.hours",
        T::Int,
        Some("168"),
        Validator::AtLeast(1),
        "Default `segment.ms` in hours, used when `log.roll.ms` is not set.",
    ),
    def(
        "log.roll.jitter.hours",
        T::Int,
        Some("0"),
        Validator::AtLeast(0),
        "Default `segment.jitter.ms` in hours, used when `log.roll.jitter.ms` is not set.",
    ),
    def(
        "group.initial.rebalance.delay.ms",
        T::Int,
        Some("3000"),
        Validator::AtLeast(0),
        "How long the coordinator waits for more members to join a new (empty) group before its first rebalance completes.",
    ),
    def(
        "group.min.session.timeout.ms",
        T::Int,
        Some("6000"),
        Validator::AtLeast(1),
        "Smallest `session.timeout.ms` a group member may ask for; smaller ones get INVALID_SESSION_TIMEOUT.",
    ),
    def(
        "group.max.session.timeout.ms",
        T::Int,
        Some("1800000"),
        Validator::AtLeast(1),
        "Largest `session.timeout.ms` a group member may ask for.",
    ),
    def(
        "group.max.size",
        T::Int,
        Some("2147483647"),
        Validator::AtLeast(1),
        "Most members one consumer group may have; further joins get GROUP_MAX_SIZE_REACHED.",
    ),
    def(
        "offsets.topic.num.partitions",
        T::Int,
        Some("50"),
        Validator::AtLeast(1),
        "Partitions of `__consumer_offsets`, created on the first FindCoordinator. A group's coordinator is the leader of partition `abs(hash(group.id)) % offsets.topic.num.partitions`; do not change it once the topic exists.",
    ),
    def(
        "offsets.topic.replication.factor",
        T::Int,
        Some("3"),
        Validator::AtLeast(1),
        "Replication factor of `__consumer_offsets`, capped at the number of registered brokers when it is created.",
    ),
    def(
        "offsets.topic.segment.bytes",
        T::Int,
        Some("104857600"),
        Validator::AtLeast(1048576),
        "`segment.bytes` of `__consumer_offsets`: small segments let the cleaner compact it sooner.",
    ),
    def(
        "offsets.retention.minutes",
        T::Int,
        Some("10080"),
        Validator::AtLeast(1),
        "Committed offsets of a group without members are deleted this long after the group became empty (or, for offsets committed later, after their commit).",
    ),
    def(
        "offsets.retention.check.interval.ms",
        T::Long,
        Some("600000"),
        Validator::AtLeast(1),
        "How often expired committed offsets are looked for.",
    ),
    def(
        "offset.metadata.max.bytes",
        T::Int,
        Some("4096"),
        Validator::AtLeast(0),
        "Largest metadata string accepted with a committed offset (OFFSET_METADATA_TOO_LARGE beyond it).",
    ),
    def(
        "offsets.commit.timeout.ms",
        T::Int,
        Some("5000"),
        Validator::AtLeast(1),
        "How long an offset commit or group metadata write may wait for `__consumer_offsets` to accept it.",
    ),
    def(
        "producer.id.expiration.ms",
        T::Int,
        Some("86400000"),
        Validator::AtLeast(1),
        "Idempotent producer state of a partition is dropped this long after the producer last wrote to it.",
    ),
    def(
        "remote.log.storage.system.enable",
        T::Boolean,
        Some("true"),
        Validator::None,
        "Turns tiered storage on for this broker: topics with `remote.storage.enable=true` upload closed segments to `remote.log.storage.url` and serve old data from there. When false, no object store is contacted.",
    ),
    def(
        "remote.log.storage.url",
        T::String,
        Some("sluice-remote"),
        Validator::None,
        "Where tiered segments live: `s3://bucket/prefix` (any S3-compatible store), `gs://bucket/prefix`, `az://container/prefix`, or a local directory (`file:///path` or a plain path) for single-machine use. Credentials come from the usual environment variables of each cloud (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...).",
    ),
    def(
        "remote.log.storage.s3.endpoint",
        T::String,
        None,
        Validator::None,
        "S3 endpoint for S3-compatible stores (MinIO, Ceph, R2), e.g. `http://minio:9000`; null means AWS (or `AWS_ENDPOINT_URL`). Plain `http://` endpoints are allowed.",
    ),
    def(
        "remote.log.storage.s3.region",
        T::String,
        None,
        Validator::None,
        "S3 region; null means `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.",
    ),
    def(
        "remote.log.storage.s3.path.style.access",
        T::Boolean,
        Some("false"),
        Validator::None,
        "Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`; most self-hosted S3-compatible stores need true.",
    ),
    def(
        "remote.log.storage.s3.credentials.file",
        T::String,
        None,
        Validator::None,
        "An AWS shared credentials file (INI, profile `AWS_PROFILE` or `default`) read when the environment holds no access key; null means `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials` if present. Suits a Kubernetes Secret mounted as a file.",
    ),
    def(
        "remote.log.storage.upload.part.size.bytes",
        T::Long,
        Some("16777216"),
        Validator::AtLeast(5_242_880),
        "Segments larger than this are uploaded as multipart uploads with parts of this size (S3's minimum part is 5 MiB).",
    ),
    def(
        "remote.log.manager.task.interval.ms",
        T::Long,
        Some("30000"),
        Validator::AtLeast(1),
        "How often each partition's remote tier is checked for sealed segments to upload and for remote retention. Manifests of new partitions are loaded within 200 ms regardless.",
    ),
    def(
        "remote.log.manager.copier.thread.pool.size",
        T::Int,
        Some("10"),
        Validator::AtLeast(1),
        "Most partitions uploading segments at once (each partition uploads one segment at a time, in offset order).",
    ),
    def(
        "remote.log.manager.copy.max.bytes.per.second",
        T::Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        "Upload bandwidth cap of this broker, over all partitions.",
    ),
    def(
        "remote.log.manager.task.retry.backoff.ms",
        T::Long,
        Some("500"),
        Validator::AtLeast(1),
        "First wait before retrying a failed upload, manifest load or remote deletion; doubles per failure.",
    ),
    def(
        "remote.log.manager.task.retry.backoff.max.ms",
        T::Long,
        Some("30000"),
        Validator::AtLeast(1),
        "Longest wait between retries of failed remote storage work.",
    ),
    def(
        "remote.log.reader.threads",
        T::Int,
        Some("10"),
        Validator::AtLeast(1),
        "Most object store reads (chunk downloads for fetches, read-ahead and timestamp lookups) in flight at once.",
    ),
    def(
        "remote.fetch.max.wait.ms",
        T::Int,
        Some("500"),
        Validator::AtLeast(1),
        "How long a Fetch waits for remote data before answering with what it has (the read continues into the cache, so the client's retry finds it).",
    ),
    def(
        "remote.log.reader.chunk.size.bytes",
        T::Int,
        Some("4194304"),
        Validator::AtLeast(65_536),
        "Remote segments are read and cached in ranged chunks of this size.",
    ),
    def(
        "remote.log.reader.readahead.chunks",
        T::Int,
        Some("2"),
        Validator::AtLeast(0),
        "Chunks fetched ahead of a consumer reading remote data sequentially.",
    ),
    def(
        "remote.log.reader.cache.size.bytes",
        T::Long,
        Some("1073741824"),
        Validator::AtLeast(0),
        "Disk space for cached remote chunks (in `remote-log-cache/` under the first log directory; least recently used chunks go first).",
    ),
    def(
        "remote.log.index.file.cache.total.size.bytes",
        T::Long,
        Some("134217728"),
        Validator::AtLeast(0),
        "Memory for offset and time indexes of remote segments, kept to locate offsets and timestamps without downloading segments.",
    ),
    def(
        "log.cleaner.enable",
        T::Boolean,
        Some("true"),
        Validator::None,
        "Run the log cleaner that compacts topics with `cleanup.policy=compact`.",
    ),
    def(
        "log.cleaner.backoff.ms",
        T::Long,
        Some("15000"),
        Validator::AtLeast(0),
        "How long the cleaner sleeps when no partition needs cleaning.",
    ),
    def(
        "log.cleaner.dedupe.buffer.size",
        T::Long,
        Some("134217728"),
        Validator::AtLeast(1048576),
        "Memory for the key map of one cleaning pass; a pass covers as many dirty records as fit, the rest is cleaned in the next pass.",
    ),
    def(
        "log.cleaner.io.max.bytes.per.second",
        T::Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        "Bytes per second the cleaner may read and write, so cleaning does not starve produce and fetch of disk bandwidth.",
    ),
    // Broker-wide defaults of topic settings.
    dynamic(def(
        "log.cleanup.policy",
        T::List,
        Some("delete"),
        Validator::ListOf(&["delete", "compact"]),
        "Default `cleanup.policy`.",
    )),
    dynamic(def(
        "log.cleaner.delete.retention.ms",
        T::Long,
        Some("86400000"),
        Validator::AtLeast(0),
        "Default `delete.retention.ms`.",
    )),
    dynamic(def(
        "log.cleaner.min.cleanable.ratio",
        T::Double,
        Some("0.5"),
        Validator::Ratio,
        "Default `min.cleanable.dirty.ratio`.",
    )),
    dynamic(def(
        "log.cleaner.min.compaction.lag.ms",
        T::Long,
        Some("0"),
        Validator::AtLeast(0),
        "Default `min.compaction.lag.ms`.",
    )),
    dynamic(def(
        "log.cleaner.max.compaction.lag.ms",
        T::Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        "Default `max.compaction.lag.ms`.",
    )),
    dynamic(def(
        "compression.type",
        T::String,
        Some("producer"),
        Validator::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "Default `compression.type`.",
    )),
    dynamic(def(
        "log.flush.interval.messages",
        T::Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        "Default `flush.messages`.",
    )),
    dynamic(def(
        "log.flush.interval.ms",
        T::Long,
        None,
        Validator::AtLeast(0),
        "Default `flush.ms` (null: never flush by time).",
    )),
    dynamic(def(
        "log.index.interval.bytes",
        T::Int,
        Some("4096"),
        Validator::AtLeast(0),
        "Default `index.interval.bytes`.",
    )),
    dynamic(def(
        "message.max.bytes",
        T::Int,
        Some("1048588"),
        Validator::AtLeast(0),
        "Default `max.message.bytes`.",
    )),
    dynamic(def(
        "log.message.timestamp.type",
        T::String,
        Some("CreateTime"),
        Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        "Default `message.timestamp.type`.",
    )),
    dynamic(def(
        "log.message.timestamp.before.max.ms",
        T::Long,
        Some(LONG_MAX),
        Validator::AtLeast(0),
        "Default `message.timestamp.before.max.ms`.",
    )),
    dynamic(def(
        "log.message.timestamp.after.max.ms",
        T::Long,
        Some("3600000"),
        Validator::AtLeast(0),
        "Default `message.timestamp.after.max.ms`.",
    )),
    dynamic(def(
        "follower.replication.throttled.rate",
        T::Long,
        Some("9223372036854775807"),
        Validator::AtLeast(1),
        "Bytes per second a follower copies for replicas being added by a reassignment (rebalance, drain); other replication is not throttled.",
    )),
    dynamic(def(
        "unclean.leader.election.enable",
        T::Boolean,
        Some("false"),
        Validator::None,
        "Default `unclean.leader.election.enable`.",
    )),
    dynamic(def(
        "min.insync.replicas",
        T::Int,
        Some("1"),
        Validator::AtLeast(1),
        "Default `min.insync.replicas`.",
    )),
    dynamic(def(
        "log.local.retention.ms",
        T::Long,
        Some("-2"),
        Validator::AtLeast(-2),
        "Default `local.retention.ms`.",
    )),
    dynamic(def(
        "log.local.retention.bytes",
        T::Long,
        Some("-2"),
        Validator::AtLeast(-2),
        "Default `local.retention.bytes`.",
    )),
    dynamic(def(
        "log.remote.storage.enable",
        T::Boolean,
        Some("false"),
        Validator::None,
        "Default `remote.storage.enable` of topics that do not set it.",
    )),
    dynamic(def(
        "log.retention.bytes",
        T::Long,
        Some("-1"),
        Validator::None,
        "Default `retention.bytes`.",
    )),
    dynamic(def(
        "log.retention.ms",
        T::Long,
        None,
        Validator::None,
        "Default `retention.ms` (null: from `log.retention.minutes` or `log.retention.hours`).",
    )),
    dynamic(def(
        "log.segment.bytes",
        T::Int,
        Some("1073741824"),
        Validator::AtLeast(1_048_576),
        "Default `segment.bytes`.",
    )),
    dynamic(def(
        "log.index.size.max.bytes",
        T::Int,
        Some("10485760"),
        Validator::AtLeast(8),
        "Default `segment.index.bytes`.",
    )),
    dynamic(def(
        "log.roll.jitter.ms",
        T::Long,
        None,
        Validator::AtLeast(0),
        "Default `segment.jitter.ms` (null: from `log.roll.jitter.hours`).",
    )),
    dynamic(def(
        "log.roll.ms",
        T::Long,
        None,
        Validator::AtLeast(1),
        "Default `segment.ms` (null: from `log.roll.hours`).",
    )),
];

/// Synonyms accepted for broker settings: (alias, canonical name).
pub const BROKER_ALIASES: &[(&str, &str)] = &[("broker.id", "node.id"), ("log.dir", "log.dirs")];

/// A topic-level setting and the broker setting it defaults to.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub def: ConfigDef,
    pub broker_synonym: &'static str,
}

const fn topic(
    name: &'static str,
    ty: ConfigType,
    validator: Validator,
    broker_synonym: &'static str,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        def: ConfigDef {
            name,
            ty,
            default: None,
            validator,
            dynamic: true,
            doc,
        },
        broker_synonym,
    }
}

/// Topic settings. Defaults come from the broker synonym.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic(
        "cleanup.policy",
        T::List,
        Validator::ListOf(&["delete", "compact"]),
        "log.cleanup.policy",
        "`delete` removes whole segments by `retention.ms` / `retention.bytes`; `compact` keeps the latest record per key (the log cleaner rewrites closed segments); `compact,delete` does both. Compacted topics refuse records without a key.",
    ),
    topic(
        "delete.retention.ms",
        T::Long,
        Validator::AtLeast(0),
        "log.cleaner.delete.retention.ms",
        "How long a tombstone (a record with a key and a null value) of a compacted topic survives after its segment was first cleaned, so consumers reading from the start see the deletion.",
    ),
    topic(
        "min.cleanable.dirty.ratio",
        T::Double,
        Validator::Ratio,
        "log.cleaner.min.cleanable.ratio",
        "Clean a compacted partition only when the not-yet-cleaned share of its closed segments is at least this.",
    ),
    topic(
        "min.compaction.lag.ms",
        T::Long,
        Validator::AtLeast(0),
        "log.cleaner.min.compaction.lag.ms",
        "Records younger than this are never compacted away.",
    ),
    topic(
        "local.retention.bytes",
        T::Long,
        Validator::AtLeast(-2),
        "log.local.retention.bytes",
        "With remote storage: delete local segments (only once uploaded) while the local log is larger than this; -2 means `retention.bytes`. Must not exceed `retention.bytes`.",
    ),
    topic(
        "local.retention.ms",
        T::Long,
        Validator::AtLeast(-2),
        "log.local.retention.ms",
        "With remote storage: delete local segments (only once uploaded) whose newest record is older than this; -2 means `retention.ms`. Must not exceed `retention.ms`.",
    ),
    topic(
        "max.compaction.lag.ms",
        T::Long,
        Validator::AtLeast(1),
        "log.cleaner.max.compaction.lag.ms",
        "A partition with dirty records older than this is cleaned whatever its dirty ratio.",
    ),
    topic(
        "compression.type",
        T::String,
        Validator::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "compression.type",
        "`producer` stores batches as the client compressed them; any other codec makes the broker recompress batches that use a different one.",
    ),
    topic(
        "flush.messages",
        T::Long,
        Validator::AtLeast(1),
        "log.flush.interval.messages",
        "fsync the partition after this many messages; the produce response waits for it.",
    ),
    topic(
        "flush.ms",
        T::Long,
        Validator::AtLeast(0),
        "log.flush.interval.ms",
        "fsync the partition when this long has passed since its last fsync and it has unflushed messages.",
    ),
    topic(
        "index.interval.bytes",
        T::Int,
        Validator::AtLeast(0),
        "log.index.interval.bytes",
        "Bytes between offset index entries.",
    ),
    topic(
        "max.message.bytes",
        T::Int,
        Validator::AtLeast(0),
        "message.max.bytes",
        "Largest record batch accepted (after compression).",
    ),
    topic(
        "message.timestamp.type",
        T::String,
        Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        "log.message.timestamp.type",
        "`CreateTime` keeps the producer's timestamps; `LogAppendTime` stamps batches with the broker's clock.",
    ),
    topic(
        "message.timestamp.before.max.ms",
        T::Long,
        Validator::AtLeast(0),
        "log.message.timestamp.before.max.ms",
        "With CreateTime, reject batches whose first timestamp is further in the past than this.",
    ),
    topic(
        "message.timestamp.after.max.ms",
        T::Long,
        Validator::AtLeast(0),
        "log.message.timestamp.after.max.ms",
        "With CreateTime, reject batches whose max timestamp is further in the future than this.",
    ),
    topic(
        "min.insync.replicas",
        T::Int,
        Validator::AtLeast(1),
        "min.insync.replicas",
        "With acks=all, fail produce with NOT_ENOUGH_REPLICAS when fewer replicas are in sync.",
    ),
    topic(
        "unclean.leader.election.enable",
        T::Boolean,
        Validator::None,
        "unclean.leader.election.enable",
        "When every in-sync replica is gone, let an out-of-sync replica lead: the partition comes back sooner but loses the records it never got.",
    ),
    topic(
        "remote.storage.enable",
        T::Boolean,
        Validator::None,
        "log.remote.storage.enable",
        "Upload closed segments of this topic to the broker's object store (`remote.log.storage.url`) and serve data that left the local disk from there. Not allowed with `cleanup.policy=compact`.",
    ),
    topic(
        "retention.bytes",
        T::Long,
        Validator::None,
        "log.retention.bytes",
        "Delete the oldest segments while the partition is larger than this; -1 for no limit.",
    ),
    topic(
        "retention.ms",
        T::Long,
        Validator::AtLeast(-1),
        "log.retention.ms",
        "Delete segments whose newest record is older than this; -1 for no limit.",
    ),
    topic(
        "segment.bytes",
        T::Int,
        Validator::AtLeast(1_048_576),
        "log.segment.bytes",
        "Roll to a new segment when the active one would grow beyond this.",
    ),
    topic(
        "segment.index.bytes",
        T::Int,
        Validator::AtLeast(8),
        "log.index.size.max.bytes",
        "Roll when the offset index of the active segment would exceed this size.",
    ),
    topic(
        "segment.jitter.ms",
        T::Long,
        Validator::AtLeast(0),
        "log.roll.jitter.ms",
        "Each segment rolls after `segment.ms` minus a random share of this, so that many partitions do not roll at once.",
    ),
    topic(
        "segment.ms",
        T::Long,
        Validator::AtLeast(1),
        "log.roll.ms",
        "Roll to a new segment when the active one's first batch is older than this.",
    ),
];

pub fn broker_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

pub fn topic_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.def.name == name)
}

/// Checks `value` against a definition; the error text goes back to the client.
pub fn validate(def: &ConfigDef, value: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {}: {why}",
            def.name
        ))
    };
    let number = match def.ty {
        T::Int => match value.trim().parse::<i32>() {
            Ok(v) => Some(i64::from(v)),
            Err(_) => return bad("not a 32-bit integer"),
        },
        T::Long => match value.trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => return bad("not a 64-bit integer"),
        },
        T::Boolean => {
            if !value.trim().eq_ignore_ascii_case("true")
                && !value.trim().eq_ignore_ascii_case("false")
            {
                return bad("expected true or false");
            }
            None
        }
        T::Double => match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => {
                if matches!(def.validator, Validator::Ratio) && !(0.0..=1.0).contains(&v) {
                    return bad("value must be between 0 and 1");
                }
                None
            }
            _ => return bad("not a number"),
        },
        T::String | T::List | T::Password => None,
    };
    match def.validator {
        Validator::None | Validator::Ratio => Ok(()),
        Validator::AtLeast(min) => match number {
            Some(n) if n < min => bad(&format!("value must be at least {min}")),
            _ => Ok(()),
        },
        Validator::OneOf(allowed) => {
            if allowed.contains(&value.trim()) {
                Ok(())
            } else {
                bad(&format!("string must be one of: {}", allowed.join(", ")))
            }
        }
        Validator::ListOf(allowed) => {
            for item in value.split(',').map(str::trim) {
                if !allowed.contains(&item) {
                    return bad(&format!("list items must be from: {}", allowed.join(", ")));
                }
            }
            Ok(())
        }
    }
}

/// Markdown reference of every setting, embedded in `docs/configuration.md`.
pub fn markdown_reference() -> std::string::String {
    use std::fmt::Write;
    let mut s = std::string::String::new();
    let default = |d: &ConfigDef| match d.default {
        Some(v) => format!("`{v}`"),
        None => "null".to_string(),
    };
    s.push_str("### Broker settings\n\n| Name | Type | Default | Dynamic | Description |\n|---|---|---|---|---|\n");
    for d in BROKER_CONFIGS {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            d.name,
            d.ty.name(),
            default(d),
            if d.dynamic { "yes" } else { "no" },
            d.doc
        );
    }
    s.push_str(
        "\n### Topic settings\n\n| Name | Type | Default from | Description |\n|---|---|---|---|\n",
    );
    for t in TOPIC_CONFIGS {
        let _ = writeln!(
            s,
            "| `{}` | {} | `{}` | {} |",
            t.def.name,
            t.def.ty.name(),
            t.broker_synonym,
            t.def.doc
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_knows_every_dynamic_setting() {
        let ours: Vec<&str> = BROKER_CONFIGS
            .iter()
            .filter(|d| d.dynamic)
            .map(|d| d.name)
            .collect();
        assert_eq!(ours, sluice_api::DYNAMIC_BROKER_CONFIGS);
    }

    #[test]
    fn every_topic_setting_has_a_broker_default() {
        for t in TOPIC_CONFIGS {
            assert!(
                broker_def(t.broker_synonym).is_some_and(|d| d.dynamic),
                "{} falls back to unknown or static {}",
                t.def.name,
                t.broker_synonym
            );
        }
    }

    #[test]
    fn defaults_are_valid() {
        for d in BROKER_CONFIGS {
            if let Some(v) = d.default {
                validate(d, v).unwrap();
            }
        }
    }

    #[test]
    fn validation_messages() {
        let d = &topic_def("cleanup.policy").unwrap().def;
        assert!(validate(d, "delete").is_ok());
        assert!(validate(d, "compact,delete").is_ok());
        assert!(validate(d, "compacted").is_err());
        let d = &topic_def("min.cleanable.dirty.ratio").unwrap().def;
        assert!(validate(d, "0.25").is_ok());
        assert!(validate(d, "1.5").is_err());
        assert!(validate(d, "x").is_err());
        let d = &topic_def("retention.ms").unwrap().def;
        assert!(validate(d, "-1").is_ok());
        assert!(validate(d, "abc").is_err());
        let d = &topic_def("segment.bytes").unwrap().def;
        assert!(validate(d, "1000").is_err());
        let d = &topic_def("message.timestamp.type").unwrap().def;
        assert!(validate(d, "LogAppendTime").is_ok());
        assert!(validate(d, "logappendtime").is_err());
    }

    #[test]
    fn configuration_doc_is_current() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/configuration.md"
        ))
        .expect("docs/configuration.md exists");
        assert!(
            doc.contains(&markdown_reference()),
            "docs/configuration.md is stale: regenerate the reference with \
             `cargo run -p sluice-broker -- config-reference` and paste it in"
        );
    }
}
