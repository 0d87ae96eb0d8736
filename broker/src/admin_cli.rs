//! `sluice-broker admin ...`: calls the admin gRPC API of a running broker and prints the
//! answer as JSON — for operators (`kubectl exec`) and tests.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use sluice_api::admin::admin_client::AdminClient;
use sluice_api::admin::{
    Acl, AclFilter, AclList, CreateAclsRequest, DeleteUserRequest, ListQuotasRequest,
    ListUsersRequest, QuotaList, SetQuotasRequest, UpsertUserRequest, UserDescription,
};
use sluice_api::admin::{
    CancelRebalanceRequest, DrainBrokerRequest, GetClusterStatusRequest,
    GetRebalanceProgressRequest, RebalancePlan, RebalanceProgress, RebalanceRequest,
    SetQuorumVotersRequest,
};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Cluster health: brokers, under-replicated and offline partitions, the quorum.
    Status,
    /// Plan (and unless --dry-run, start) a balanced assignment.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
        /// Move every replica off these brokers.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<i32>,
        /// Bytes/s each follower may copy for moving replicas.
        #[arg(long)]
        throttle: Option<i64>,
    },
    /// Move every replica off a broker (before removing it).
    Drain {
        broker: i32,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        throttle: Option<i64>,
    },
    /// Reassignments in progress.
    Progress,
    /// Cancel every reassignment in progress.
    Cancel,
    /// Replace the metadata quorum's voters, e.g. `voters 0,1,3`.
    Voters {
        #[arg(value_delimiter = ',', required = true)]
        ids: Vec<i32>,
    },
    /// Forget a stopped, drained broker (after removing it from the cluster).
    Unregister { broker: i32 },
    /// Whether stopping a broker now keeps every partition at min.insync.replicas.
    RestartSafety { broker: i32 },
    /// Create or update a SCRAM user (SCRAM-SHA-256 and -512 unless --mechanism).
    UserSet {
        name: String,
        /// The password; prefer --password-file, which keeps it out of `ps`.
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        #[arg(long)]
        mechanism: Vec<String>,
        #[arg(long, default_value_t = 0)]
        iterations: i32,
    },
    /// Delete a SCRAM user.
    UserDelete { name: String },
    /// List SCRAM users.
    Users,
    /// Add an ACL, e.g. `acl-add --principal User:alice --operation READ --topic orders- --prefixed`.
    AclAdd(AclArgs),
    /// Remove the ACLs matching (omitted fields match anything).
    AclRemove(AclArgs),
    /// List ACLs.
    Acls,
    /// Set client quotas: `quota-set --user alice producer_byte_rate=1048576`.
    QuotaSet {
        /// A user name, or `<default>`.
        #[arg(long, default_value = "")]
        user: String,
        /// A client id, or `<default>`.
        #[arg(long, default_value = "")]
        client_id: String,
        /// `key=value` pairs.
        #[arg(value_parser = parse_quota)]
        values: Vec<(String, f64)>,
        /// Quota keys to remove.
        #[arg(long)]
        remove: Vec<String>,
    },
    /// List client quotas.
    Quotas,
}

#[derive(Debug, clap::Args)]
pub struct AclArgs {
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    operation: Option<String>,
    #[arg(long, group = "resource")]
    topic: Option<String>,
    #[arg(long, group = "resource")]
    group: Option<String>,
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The resource name is a prefix.
    #[arg(long)]
    prefixed: bool,
    #[arg(long)]
    deny: bool,
    #[arg(long)]
    host: Option<String>,
}

impl AclArgs {
    fn resource(&self) -> (String, String) {
        let pick = |t: &str, n: &Option<String>| n.clone().map(|n| (t.to_string(), n));
        pick("TOPIC", &self.topic)
            .or_else(|| pick("GROUP", &self.group))
            .or_else(|| pick("TRANSACTIONAL_ID", &self.transactional_id))
            .or_else(|| {
                self.cluster
                    .then(|| ("CLUSTER".into(), "kafka-cluster".into()))
            })
            .unwrap_or_default()
    }

    fn acl(&self) -> Acl {
        let (resource_type, resource_name) = self.resource();
        Acl {
            resource_type,
            resource_name,
            pattern_type: if self.prefixed { "PREFIXED" } else { "LITERAL" }.into(),
            principal: self.principal.clone().unwrap_or_default(),
            host: self.host.clone().unwrap_or_else(|| "*".into()),
            operation: self.operation.clone().unwrap_or_default(),
            permission: if self.deny { "DENY" } else { "ALLOW" }.into(),
        }
    }

    fn filter(&self) -> AclFilter {
        let (resource_type, resource_name) = self.resource();
        AclFilter {
            resource_type,
            resource_name,
            pattern_type: if self.prefixed {
                "PREFIXED".into()
            } else {
                String::new()
            },
            principal: self.principal.clone().unwrap_or_default(),
            host: self.host.clone().unwrap_or_default(),
            operation: self.operation.clone().unwrap_or_default(),
            permission: if self.deny {
                "DENY".into()
            } else {
                String::new()
            },
        }
    }
}

fn parse_quota(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s.split_once('=').ok_or("expected key=value")?;
    let v: f64 = v.parse().map_err(|_| format!("{v} is not a number"))?;
    Ok((k.to_string(), v))
}

fn acls_json(l: AclList) -> Value {
    json!(
        l.acls
            .iter()
            .map(|a| json!({
                "resource_type": a.resource_type, "resource_name": a.resource_name,
                "pattern_type": a.pattern_type, "principal": a.principal, "host": a.host,
                "operation": a.operation, "permission": a.permission,
            }))
            .collect::<Vec<_>>()
    )
}

fn quotas_json(l: QuotaList) -> Value {
    json!(
        l.quotas
            .iter()
            .map(|q| json!({
                "user": q.user, "client_id": q.client_id, "values": q.values,
            }))
            .collect::<Vec<_>>()
    )
}

fn user_json(u: &UserDescription) -> Value {
    json!({
        "name": u.name,
        "credentials": u.credentials.iter().map(|c| json!({
            "mechanism": c.mechanism, "iterations": c.iterations,
        })).collect::<Vec<_>>(),
    })
}

fn plan_json(p: RebalancePlan) -> Value {
    let load = |m: std::collections::BTreeMap<i32, sluice_api::admin::BrokerLoad>| -> Value {
        m.into_iter()
            .map(|(b, l)| {
                (
                    b.to_string(),
                    json!({"replicas": l.replicas, "leaders": l.leaders, "bytes": l.bytes}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "executed": p.executed,
        "bytes_to_move": p.bytes_to_move,
        "moves": p.moves.iter().map(|m| json!({
            "topic": m.topic, "partition": m.partition,
            "from": m.from_replicas, "to": m.to_replicas, "bytes": m.bytes,
        })).collect::<Vec<_>>(),
        "before": load(p.before),
        "after": load(p.after),
    })
}

fn progress_json(p: RebalanceProgress) -> Value {
    json!({
        "moving": p.moving.iter().map(|m| json!({
            "topic": m.topic, "partition": m.partition, "replicas": m.replicas,
            "adding": m.adding, "removing": m.removing,
        })).collect::<Vec<_>>(),
    })
}

/// `tls`: (CA bundle, client certificate, client key) for a TLS internal listener.
pub async fn run(
    server: &str,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    cmd: AdminCommand,
) -> anyhow::Result<()> {
    let addr = server
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let endpoint = match tls {
        None => sluice_broker::security::internal::endpoint(addr),
        Some((ca, certificate, key)) => sluice_broker::security::internal::client_endpoint(
            addr,
            &sluice_broker::config::security::TlsFiles {
                certificate,
                key,
                truststore: Some(ca),
                client_auth: sluice_broker::config::security::ClientAuth::None,
                tls12: true,
                tls13: true,
                principal_rules: String::new(),
                verify_hostname: true,
            },
        ),
    }
    .map_err(anyhow::Error::msg)?;
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to the admin API at {addr}"))?;
    let mut c = AdminClient::new(channel);
    let out = match cmd {
        AdminCommand::Status => {
            let s = c
                .get_cluster_status(GetClusterStatusRequest {})
                .await?
                .into_inner();
            let parts = |v: &[sluice_api::admin::PartitionRef]| -> Vec<Value> {
                v.iter()
                    .map(|p| json!({"topic": p.topic, "partition": p.partition}))
                    .collect()
            };
            json!({
                "cluster_id": s.cluster_id,
                "controller_id": s.controller_id,
                "brokers": s.brokers.iter().map(|b| json!({
                    "id": b.broker_id, "rack": b.rack, "fenced": b.fenced,
                    "replicas": b.replicas, "leaders": b.leaders,
                })).collect::<Vec<_>>(),
                "max_replication_factor": s.max_replication_factor,
                "max_replication_factor_topic": s.max_replication_factor_topic,
                "topics": s.topics,
                "partitions": s.partitions,
                "under_replicated": parts(&s.under_replicated),
                "offline": parts(&s.offline),
                "reassigning_partitions": s.reassigning_partitions,
                "quorum": s.quorum.map(|q| json!({
                    "leader": q.leader_id, "voters": q.voters, "learners": q.learners,
                    "applied_index": q.applied_index,
                })),
            })
        }
        AdminCommand::Rebalance {
            dry_run,
            exclude,
            throttle,
        } => plan_json(
            c.rebalance(RebalanceRequest {
                dry_run,
                exclude_brokers: exclude,
                throttle_bytes_per_second: throttle,
            })
            .await?
            .into_inner(),
        ),
        AdminCommand::Drain {
            broker,
            dry_run,
            throttle,
        } => plan_json(
            c.drain_broker(DrainBrokerRequest {
                broker_id: broker,
                dry_run,
                throttle_bytes_per_second: throttle,
            })
            .await?
            .into_inner(),
        ),
        AdminCommand::Progress => progress_json(
            c.get_rebalance_progress(GetRebalanceProgressRequest {})
                .await?
                .into_inner(),
        ),
        AdminCommand::Voters { ids } => {
            let q = c
                .set_quorum_voters(SetQuorumVotersRequest { voters: ids })
                .await?
                .into_inner();
            json!({"leader": q.leader_id, "voters": q.voters, "learners": q.learners})
        }
        AdminCommand::Unregister { broker } => {
            c.unregister_broker(sluice_api::admin::UnregisterBrokerRequest { broker_id: broker })
                .await?;
            json!({"unregistered": broker})
        }
        AdminCommand::RestartSafety { broker } => {
            let r = c
                .get_restart_safety(sluice_api::admin::GetRestartSafetyRequest {
                    broker_id: broker,
                })
                .await?
                .into_inner();
            let blocking: Vec<_> = r
                .blocking
                .iter()
                .map(|p| json!({"topic": p.topic, "partition": p.partition, "isr": p.isr, "min_insync_replicas": p.min_insync_replicas}))
                .collect();
            let unavoidable: Vec<_> = r
                .unavoidable
                .iter()
                .map(|p| json!({"topic": p.topic, "partition": p.partition}))
                .collect();
            json!({"safe": r.safe, "blocking": blocking, "unavoidable": unavoidable})
        }
        AdminCommand::UserSet {
            name,
            password,
            password_file,
            mechanism,
            iterations,
        } => {
            let password = match (password, password_file) {
                (Some(p), _) => p,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, None) => anyhow::bail!("give --password or --password-file"),
            };
            let u = c
                .upsert_user(UpsertUserRequest {
                    name,
                    password,
                    mechanisms: mechanism,
                    iterations,
                })
                .await?
                .into_inner();
            user_json(&u)
        }
        AdminCommand::UserDelete { name } => {
            c.delete_user(DeleteUserRequest { name: name.clone() })
                .await?;
            json!({"deleted": name})
        }
        AdminCommand::Users => {
            let l = c.list_users(ListUsersRequest {}).await?.into_inner();
            json!(l.users.iter().map(user_json).collect::<Vec<_>>())
        }
        AdminCommand::AclAdd(a) => acls_json(
            c.create_acls(CreateAclsRequest {
                acls: vec![a.acl()],
            })
            .await?
            .into_inner(),
        ),
        AdminCommand::AclRemove(a) => acls_json(c.delete_acls(a.filter()).await?.into_inner()),
        AdminCommand::Acls => acls_json(c.list_acls(AclFilter::default()).await?.into_inner()),
        AdminCommand::QuotaSet {
            user,
            client_id,
            values,
            remove,
        } => quotas_json(
            c.set_quotas(SetQuotasRequest {
                user,
                client_id,
                set: values.into_iter().collect(),
                remove,
            })
            .await?
            .into_inner(),
        ),
        AdminCommand::Quotas => {
            quotas_json(c.list_quotas(ListQuotasRequest {}).await?.into_inner())
        }
        AdminCommand::Cancel => progress_json(
            c.cancel_rebalance(CancelRebalanceRequest {})
                .await?
                .into_inner(),
        ),
    };
    println!("{out}");
    Ok(())
}
