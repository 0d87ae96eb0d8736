//! ApiVersions: the APIs and version ranges of `versions::SUPPORTED`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{Outcome, RequestContext, encode_frame, versions};

fn api_list() -> Vec<ApiVersion> {
    versions::SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// KIP-511: client software names and versions must match this pattern.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

pub fn handle(ctx: &RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default().with_api_keys(api_list());
    if ctx.version >= 3
        && (!valid_software_field(&req.client_software_name)
            || !valid_software_field(&req.client_software_version))
    {
        resp.error_code = ResponseError::InvalidRequest.code();
    }
    resp
}

/// The v0 answer to an ApiVersions request of a version we do not know.
pub fn unsupported_version_response(correlation_id: i32) -> Outcome {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list());
    match encode_frame(ApiKey::ApiVersions, 0, correlation_id, &resp) {
        Ok(b) => Outcome::Respond(b),
        Err(e) => Outcome::Close(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_fields() {
        assert!(valid_software_field("apache-kafka-java"));
        assert!(valid_software_field("2.16.1"));
        assert!(!valid_software_field(""));
        assert!(!valid_software_field("-x"));
        assert!(!valid_software_field("a b"));
    }
}
