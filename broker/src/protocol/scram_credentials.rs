//! DescribeUserScramCredentials and AlterUserScramCredentials: SCRAM users live in the
//! cluster metadata as salted, iterated keys.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, msg};
use crate::metadata::{ClusterMetadata, MetadataCommand};
use crate::security::acl::Operation;
use crate::security::sasl::{ScramCredential, ScramMechanism};

fn infos(md: &ClusterMetadata, user: &str) -> Vec<CredentialInfo> {
    md.scram
        .get(user)
        .map(|m| {
            m.iter()
                .map(|(mech, c)| {
                    CredentialInfo::default()
                        .with_mechanism(mech.kafka_type())
                        .with_iterations(c.iterations as i32)
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn describe(
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let md = ctx.broker.metadata.current();
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if !ctx.cluster_allowed(&md, Operation::Describe) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        resp.error_message = msg("DESCRIBE on the cluster is required to list SCRAM users");
        return resp;
    }
    let result = |user: &str| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
    };
    match req.users.filter(|u| !u.is_empty()) {
        None => {
            resp.results = md
                .scram
                .keys()
                .map(|u| result(u).with_credential_infos(infos(&md, u)))
                .collect();
        }
        Some(users) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for u in &users {
                *counts.entry(u.name.as_str()).or_default() += 1;
            }
            for (user, count) in counts {
                let r = if count > 1 {
                    result(user)
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(msg(format!("user {user} is listed twice")))
                } else if !md.scram.contains_key(user) {
                    result(user)
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(msg(format!(
                            "attempt to describe a user credential that does not exist: {user}"
                        )))
                } else {
                    result(user).with_credential_infos(infos(&md, user))
                };
                resp.results.push(r);
            }
        }
    }
    resp
}

pub async fn alter(
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let md = ctx.broker.metadata.current();
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    let mut users: BTreeSet<String> = BTreeSet::new();
    let authorized = ctx.cluster_allowed(&md, Operation::Alter);
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    type Refusal = (ResponseError, String);
    // Each (user, mechanism) is changed at most once per request, with a known mechanism.
    let mut claim = |user: &str, mechanism: i8| -> Result<ScramMechanism, Refusal> {
        if !seen.insert((user.to_string(), mechanism)) {
            return Err((
                ResponseError::DuplicateResource,
                format!("{user} is changed twice for one mechanism"),
            ));
        }
        ScramMechanism::from_kafka_type(mechanism).ok_or_else(|| {
            (
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {mechanism}"),
            )
        })
    };
    let mut upsert = Vec::new();
    let mut delete = Vec::new();
    for d in &req.deletions {
        let user = d.name.to_string();
        users.insert(user.clone());
        let checked = claim(&user, d.mechanism).and_then(|m| {
            if md.scram.get(&user).is_none_or(|c| !c.contains_key(&m)) {
                return Err((
                    ResponseError::ResourceNotFound,
                    format!(
                        "attempt to delete a user credential that does not exist: {user} {}",
                        m.name()
                    ),
                ));
            }
            Ok(m)
        });
        match checked {
            Ok(m) => delete.push((user, m)),
            Err(e) => {
                errors.entry(user).or_insert(e);
            }
        }
    }
    let range = ScramMechanism::MIN_ITERATIONS..=ScramMechanism::MAX_ITERATIONS;
    for u in &req.upsertions {
        let user = u.name.to_string();
        users.insert(user.clone());
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        let unacceptable = |why: String| Err((ResponseError::UnacceptableCredential, why));
        let checked = claim(&user, u.mechanism).and_then(|m| {
            if user.is_empty() {
                unacceptable("empty user name".into())
            } else if !range.contains(&iterations) {
                unacceptable(format!(
                    "iterations must be between {} and {}",
                    range.start(),
                    range.end()
                ))
            } else if u.salt.is_empty() || u.salted_password.is_empty() {
                unacceptable("salt and salted password must not be empty".into())
            } else {
                Ok(m)
            }
        });
        match checked {
            Ok(m) => {
                let cred = ScramCredential::from_salted_password(
                    m,
                    &u.salted_password,
                    &u.salt,
                    iterations,
                );
                upsert.push((user, m, cred));
            }
            Err(e) => {
                errors.entry(user).or_insert(e);
            }
        }
    }
    if !authorized {
        for u in &users {
            errors.insert(
                u.clone(),
                (
                    ResponseError::ClusterAuthorizationFailed,
                    "ALTER on the cluster is required to change SCRAM users".into(),
                ),
            );
        }
    }
    upsert.retain(|(u, _, _)| !errors.contains_key(u));
    delete.retain(|(u, _)| !errors.contains_key(u));
    if !upsert.is_empty() || !delete.is_empty() {
        let names: Vec<String> = upsert
            .iter()
            .map(|(u, _, _)| u.clone())
            .chain(delete.iter().map(|(u, _)| u.clone()))
            .collect();
        if let Err(e) = ctx
            .broker
            .metadata
            .submit(MetadataCommand::AlterScramCredentials { upsert, delete })
            .await
        {
            let code = super::topics::TopicError::from(e.clone()).code;
            for u in names {
                errors.entry(u).or_insert((
                    ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
                    e.to_string(),
                ));
            }
        } else {
            tracing::info!(principal = %ctx.principal, users = ?names, "SCRAM credentials changed");
        }
    }
    let results = users
        .into_iter()
        .map(|u| {
            let r = AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(u.clone()));
            match errors.get(&u) {
                Some((e, m)) => r
                    .with_error_code(e.code())
                    .with_error_message(msg(m.clone())),
                None => r,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
