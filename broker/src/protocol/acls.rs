//! DescribeAcls, CreateAcls and DeleteAcls over the ACLs in the cluster metadata.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, msg};
use crate::metadata::MetadataCommand;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A request's filter; ANY (1) leaves a field open, UNKNOWN or out of range is invalid.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let any_or = |code: i8, what: &str| -> Result<Option<i8>, String> {
        match code {
            1 => Ok(None),
            c if c > 1 => Ok(Some(c)),
            c => Err(format!("{what} {c} is not valid in a filter")),
        }
    };
    let resource_type = match any_or(resource_type, "resource type")? {
        None => None,
        Some(c) => Some(ResourceType::from_code(c).ok_or(format!("unknown resource type {c}"))?),
    };
    let operation = match any_or(operation, "operation")? {
        None => None,
        Some(c) => Some(Operation::from_code(c).ok_or(format!("unknown operation {c}"))?),
    };
    let permission = match any_or(permission, "permission type")? {
        None => None,
        Some(c) => Some(Permission::from_code(c).ok_or(format!("unknown permission type {c}"))?),
    };
    let pattern =
        PatternFilter::from_code(pattern).ok_or(format!("unknown pattern type {pattern}"))?;
    Ok(AclFilter {
        resource_type,
        name: name.map(|n| n.to_string()),
        pattern,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation,
        permission,
    })
}

pub fn describe(ctx: &RequestContext, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let md = ctx.broker.metadata.current();
    let mut resp = DescribeAclsResponse::default();
    if !ctx.cluster_allowed(&md, Operation::Describe) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        resp.error_message = msg("DESCRIBE on the cluster is required to list ACLs");
        return resp;
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => {
            resp.error_code = ResponseError::InvalidRequest.code();
            resp.error_message = msg(e);
            return resp;
        }
    };
    let mut grouped: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in md.acls.iter().filter(|b| f.matches(b)) {
        grouped
            .entry((b.resource_type, b.name.as_str(), b.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(&b.principal))
                    .with_host(s(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    resp.resources = grouped
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(s(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    resp
}

pub async fn create(ctx: &RequestContext, req: CreateAclsRequest) -> CreateAclsResponse {
    let md = ctx.broker.metadata.current();
    let authorized = ctx.cluster_allowed(&md, Operation::Alter);
    let mut results = Vec::with_capacity(req.creations.len());
    let mut valid = Vec::new();
    for c in &req.creations {
        let binding = (|| {
            let b = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or(format!("unknown resource type {}", c.resource_type))?,
                name: c.resource_name.to_string(),
                pattern: PatternType::from_code(c.resource_pattern_type).ok_or(format!(
                    "pattern type {} cannot be created",
                    c.resource_pattern_type
                ))?,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation)
                    .ok_or(format!("unknown operation {}", c.operation))?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or(format!("unknown permission type {}", c.permission_type))?,
            };
            b.validate().map_err(|e| e.to_string())?;
            Ok::<_, String>(b)
        })();
        let r = AclCreationResult::default();
        results.push(match (authorized, binding) {
            (false, _) => r
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_error_message(msg("ALTER on the cluster is required to create ACLs")),
            (true, Err(e)) => r
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(msg(e)),
            (true, Ok(b)) => {
                valid.push((results.len(), b));
                r
            }
        });
    }
    if !valid.is_empty() {
        let acls: Vec<AclBinding> = valid.iter().map(|(_, b)| b.clone()).collect();
        match ctx
            .broker
            .metadata
            .submit(MetadataCommand::CreateAcls { acls: acls.clone() })
            .await
        {
            Ok(_) => tracing::info!(principal = %ctx.principal, ?acls, "ACLs created"),
            Err(e) => {
                let code = super::topics::TopicError::from(e.clone()).code;
                for (i, _) in &valid {
                    results[*i].error_code = code;
                    results[*i].error_message = msg(e.to_string());
                }
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

pub async fn delete(ctx: &RequestContext, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let md = ctx.broker.metadata.current();
    let authorized = ctx.cluster_allowed(&md, Operation::Alter);
    let mut results = Vec::with_capacity(req.filters.len());
    let mut matched: Vec<Vec<AclBinding>> = Vec::with_capacity(req.filters.len());
    for f in &req.filters {
        let r = DeleteAclsFilterResult::default();
        if !authorized {
            results.push(
                r.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(msg("ALTER on the cluster is required to delete ACLs")),
            );
            matched.push(vec![]);
            continue;
        }
        match filter(
            f.resource_type_filter,
            f.resource_name_filter.as_ref(),
            f.pattern_type_filter,
            f.principal_filter.as_ref(),
            f.host_filter.as_ref(),
            f.operation,
            f.permission_type,
        ) {
            Ok(filter) => {
                matched.push(
                    md.acls
                        .iter()
                        .filter(|b| filter.matches(b))
                        .cloned()
                        .collect(),
                );
                results.push(r);
            }
            Err(e) => {
                results.push(
                    r.with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(msg(e)),
                );
                matched.push(vec![]);
            }
        }
    }
    let mut all: Vec<AclBinding> = matched.iter().flatten().cloned().collect();
    all.sort();
    all.dedup();
    if !all.is_empty() {
        if let Err(e) = ctx
            .broker
            .metadata
            .submit(MetadataCommand::DeleteAcls { acls: all.clone() })
            .await
        {
            let code = super::topics::TopicError::from(e.clone()).code;
            for (r, m) in results.iter_mut().zip(&matched) {
                if !m.is_empty() {
                    r.error_code = code;
                    r.error_message = msg(e.to_string());
                }
            }
            matched.iter_mut().for_each(Vec::clear);
        } else {
            tracing::info!(principal = %ctx.principal, acls = ?all, "ACLs deleted");
        }
    }
    for (r, m) in results.iter_mut().zip(matched) {
        r.matching_acls = m
            .into_iter()
            .map(|b| {
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(s(&b.name))
                    .with_pattern_type(b.pattern.code())
                    .with_principal(s(&b.principal))
                    .with_host(s(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
            })
            .collect();
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
