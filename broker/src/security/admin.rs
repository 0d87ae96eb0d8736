//! The admin gRPC calls for users, ACLs and quotas: proto messages to the security model
//! and metadata commands. Validation is the same as for the Kafka APIs.

use std::collections::BTreeMap;

use sluice_api::admin as pb;
use tonic::Status;

use super::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use super::quota::{self, EntityName, QuotaEntity};
use super::sasl::{ScramCredential, ScramMechanism};
use crate::broker::Broker;
use crate::metadata::{ClusterMetadata, MetadataCommand, MetadataError};

const DEFAULT_ITERATIONS: u32 = 8192;
const DEFAULT_ENTITY: &str = "<default>";

fn unavailable(e: MetadataError) -> Status {
    Status::unavailable(format!("metadata change failed: {e}"))
}

fn invalid(what: String) -> Status {
    Status::invalid_argument(format!("INVALID_REQUEST: {what}"))
}

pub fn user(md: &ClusterMetadata, name: &str) -> pb::UserDescription {
    pb::UserDescription {
        name: name.to_string(),
        credentials: md
            .scram
            .get(name)
            .map(|m| {
                m.iter()
                    .map(|(mech, c)| pb::ScramCredentialInfo {
                        mechanism: mech.name().to_string(),
                        iterations: c.iterations as i32,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub async fn upsert_user(
    broker: &Broker,
    req: pb::UpsertUserRequest,
) -> Result<pb::UserDescription, Status> {
    if req.name.is_empty() {
        return Err(invalid("the user name is empty".into()));
    }
    if req.password.is_empty() {
        return Err(invalid("the password is empty".into()));
    }
    let iterations = match req.iterations {
        0 => DEFAULT_ITERATIONS,
        i => u32::try_from(i)
            .ok()
            .filter(|i| {
                (ScramMechanism::MIN_ITERATIONS..=ScramMechanism::MAX_ITERATIONS).contains(i)
            })
            .ok_or_else(|| {
                invalid(format!(
                    "iterations must be between {} and {}",
                    ScramMechanism::MIN_ITERATIONS,
                    ScramMechanism::MAX_ITERATIONS
                ))
            })?,
    };
    let mechanisms = if req.mechanisms.is_empty() {
        ScramMechanism::ALL.to_vec()
    } else {
        req.mechanisms
            .iter()
            .map(|m| {
                ScramMechanism::from_name(m)
                    .ok_or_else(|| invalid(format!("unknown SCRAM mechanism '{m}'")))
            })
            .collect::<Result<_, _>>()?
    };
    // PBKDF2 is deliberately slow: off the async threads.
    let (name, password) = (req.name.clone(), req.password.clone());
    let upsert = tokio::task::spawn_blocking(move || {
        mechanisms
            .into_iter()
            .map(|m| {
                let cred = ScramCredential::from_password(m, password.as_bytes(), None, iterations);
                (name.clone(), m, cred)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Status::internal(format!("hashing the password failed: {e}")))?;
    let md = broker
        .metadata
        .submit(MetadataCommand::AlterScramCredentials {
            upsert,
            delete: vec![],
        })
        .await
        .map_err(unavailable)?;
    tracing::info!(user = %req.name, "SCRAM user created or updated (admin API)");
    Ok(user(&md, &req.name))
}

pub async fn delete_user(broker: &Broker, name: &str) -> Result<(), Status> {
    let md = broker.metadata.current();
    let delete: Vec<(String, ScramMechanism)> = md
        .scram
        .get(name)
        .map(|m| m.keys().map(|k| (name.to_string(), *k)).collect())
        .unwrap_or_default();
    if delete.is_empty() {
        return Err(Status::not_found(format!(
            "RESOURCE_NOT_FOUND: user {name} has no SCRAM credentials"
        )));
    }
    broker
        .metadata
        .submit(MetadataCommand::AlterScramCredentials {
            upsert: vec![],
            delete,
        })
        .await
        .map_err(unavailable)?;
    tracing::info!(user = %name, "SCRAM user deleted (admin API)");
    Ok(())
}

fn or_default<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.trim().is_empty() {
        default
    } else {
        v.trim()
    }
}

pub fn binding(a: &pb::Acl) -> Result<AclBinding, Status> {
    let b = AclBinding {
        resource_type: ResourceType::parse(&a.resource_type)
            .ok_or_else(|| invalid(format!("unknown resource type '{}'", a.resource_type)))?,
        name: a.resource_name.clone(),
        pattern: PatternType::parse(or_default(&a.pattern_type, "LITERAL"))
            .ok_or_else(|| invalid(format!("unknown pattern type '{}'", a.pattern_type)))?,
        principal: a.principal.clone(),
        host: or_default(&a.host, "*").to_string(),
        operation: Operation::parse(&a.operation)
            .ok_or_else(|| invalid(format!("unknown operation '{}'", a.operation)))?,
        permission: Permission::parse(or_default(&a.permission, "ALLOW"))
            .ok_or_else(|| invalid(format!("unknown permission '{}'", a.permission)))?,
    };
    b.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(b)
}

pub fn acl(b: &AclBinding) -> pb::Acl {
    pb::Acl {
        resource_type: b.resource_type.name().to_string(),
        resource_name: b.name.clone(),
        pattern_type: b.pattern.name().to_string(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.name().to_string(),
        permission: b.permission.name().to_string(),
    }
}

pub fn filter(f: &pb::AclFilter) -> Result<AclFilter, Status> {
    fn opt<T>(v: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Option<T>, Status> {
        if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("ANY") {
            return Ok(None);
        }
        parse(v)
            .map(Some)
            .ok_or_else(|| invalid(format!("unknown {what} '{v}'")))
    }
    let pattern = match f.pattern_type.trim().to_ascii_uppercase().as_str() {
        "" | "ANY" => PatternFilter::Any,
        "MATCH" => PatternFilter::Match,
        other => PatternFilter::Exact(
            PatternType::parse(other)
                .ok_or_else(|| invalid(format!("unknown pattern type '{other}'")))?,
        ),
    };
    let text = |v: &str| (!v.is_empty()).then(|| v.to_string());
    Ok(AclFilter {
        resource_type: opt(&f.resource_type, ResourceType::parse, "resource type")?,
        name: text(&f.resource_name),
        pattern,
        principal: text(&f.principal),
        host: text(&f.host),
        operation: opt(&f.operation, Operation::parse, "operation")?,
        permission: opt(&f.permission, Permission::parse, "permission")?,
    })
}

pub fn list_acls(md: &ClusterMetadata, f: &AclFilter) -> pb::AclList {
    pb::AclList {
        acls: md.acls.iter().filter(|b| f.matches(b)).map(acl).collect(),
    }
}

pub async fn create_acls(broker: &Broker, acls: &[pb::Acl]) -> Result<pb::AclList, Status> {
    let acls: Vec<AclBinding> = acls.iter().map(binding).collect::<Result<_, _>>()?;
    if !acls.is_empty() {
        broker
            .metadata
            .submit(MetadataCommand::CreateAcls { acls: acls.clone() })
            .await
            .map_err(unavailable)?;
        tracing::info!(?acls, "ACLs created (admin API)");
    }
    Ok(pb::AclList {
        acls: acls.iter().map(acl).collect(),
    })
}

pub async fn delete_acls(broker: &Broker, f: &AclFilter) -> Result<pb::AclList, Status> {
    let md = broker.metadata.current();
    let acls: Vec<AclBinding> = md.acls.iter().filter(|b| f.matches(b)).cloned().collect();
    if !acls.is_empty() {
        broker
            .metadata
            .submit(MetadataCommand::DeleteAcls { acls: acls.clone() })
            .await
            .map_err(unavailable)?;
        tracing::info!(?acls, "ACLs deleted (admin API)");
    }
    Ok(pb::AclList {
        acls: acls.iter().map(acl).collect(),
    })
}

pub async fn replace_principal_acls(
    broker: &Broker,
    req: &pb::ReplacePrincipalAclsRequest,
) -> Result<pb::AclList, Status> {
    if req
        .principal
        .split_once(':')
        .is_none_or(|(t, n)| t.is_empty() || n.is_empty())
    {
        return Err(invalid(format!(
            "principal '{}' is not Type:name",
            req.principal
        )));
    }
    let wanted: Vec<AclBinding> = req.acls.iter().map(binding).collect::<Result<_, _>>()?;
    if let Some(b) = wanted.iter().find(|b| b.principal != req.principal) {
        return Err(invalid(format!(
            "ACL for {} given in a replacement for {}",
            b.principal, req.principal
        )));
    }
    let md = broker.metadata.current();
    let missing: Vec<AclBinding> = wanted
        .iter()
        .filter(|b| !md.acls.contains(b))
        .cloned()
        .collect();
    if !missing.is_empty() {
        broker
            .metadata
            .submit(MetadataCommand::CreateAcls { acls: missing })
            .await
            .map_err(unavailable)?;
    }
    let md = broker.metadata.current();
    let stale: Vec<AclBinding> = md
        .acls
        .iter()
        .filter(|b| b.principal == req.principal && !wanted.contains(b))
        .cloned()
        .collect();
    if !stale.is_empty() {
        broker
            .metadata
            .submit(MetadataCommand::DeleteAcls { acls: stale })
            .await
            .map_err(unavailable)?;
    }
    tracing::info!(principal = %req.principal, count = wanted.len(), "ACLs of principal replaced (admin API)");
    Ok(pb::AclList {
        acls: wanted.iter().map(acl).collect(),
    })
}

fn entity_name(v: &str) -> Option<EntityName> {
    match v {
        "" => None,
        DEFAULT_ENTITY => Some(EntityName::Default),
        n => Some(EntityName::Named(n.to_string())),
    }
}

fn entity_text(n: &Option<EntityName>) -> String {
    match n {
        None => String::new(),
        Some(EntityName::Default) => DEFAULT_ENTITY.to_string(),
        Some(EntityName::Named(n)) => n.clone(),
    }
}

pub fn list_quotas(md: &ClusterMetadata) -> pb::QuotaList {
    pb::QuotaList {
        quotas: md
            .quotas
            .iter()
            .map(|(e, values)| pb::Quota {
                user: entity_text(&e.user),
                client_id: entity_text(&e.client_id),
                values: values.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            })
            .collect(),
    }
}

pub async fn set_quotas(
    broker: &Broker,
    req: &pb::SetQuotasRequest,
) -> Result<pb::QuotaList, Status> {
    let entity = QuotaEntity {
        user: entity_name(&req.user),
        client_id: entity_name(&req.client_id),
    };
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err(invalid("name a user and/or a client id".into()));
    }
    let mut ops: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for (k, v) in &req.set {
        quota::validate(k, *v).map_err(invalid)?;
        ops.insert(k.clone(), Some(*v));
    }
    for k in &req.remove {
        if !quota::QUOTA_KEYS.contains(&k.as_str()) {
            return Err(invalid(format!("unknown quota '{k}'")));
        }
        ops.insert(k.clone(), None);
    }
    let md = broker
        .metadata
        .submit(MetadataCommand::AlterClientQuotas {
            entries: vec![(entity.clone(), ops.into_iter().collect())],
        })
        .await
        .map_err(unavailable)?;
    tracing::info!(user = %req.user, client_id = %req.client_id, "client quotas changed (admin API)");
    Ok(list_quotas(&md))
}
