//! SaslHandshake and SaslAuthenticate, and the per-connection session they drive: who the
//! client is, and until when (KIP-368 re-authentication).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Outcome, RequestContext, encode_frame, msg};
use crate::config::security::{ListenerSecurity, SecurityProtocol};
use crate::security::ANONYMOUS;
use crate::security::sasl::{SaslError, ScramMechanism, ScramServer, parse_plain};

#[derive(Debug)]
enum SaslState {
    /// Not a SASL listener.
    Off,
    AwaitHandshake,
    Mechanism(String),
    Scram(Box<ScramServer>, ScramMechanism),
    Authenticated,
}

/// One connection's security state.
#[derive(Debug)]
pub struct Session {
    pub listener: Arc<str>,
    pub protocol: SecurityProtocol,
    /// `User:name`; `User:ANONYMOUS` until authenticated.
    pub principal: Arc<str>,
    mechanisms: Vec<String>,
    reauth: Option<Duration>,
    state: SaslState,
    /// When the SASL session ends (connections.max.reauth.ms).
    expires: Option<Instant>,
    /// Re-authentication must keep the principal.
    authenticated_before: bool,
    /// Set by a quota: the next request waits until then.
    pub throttled_until: Option<Instant>,
}

impl Session {
    pub fn new(listener: Arc<str>, security: &ListenerSecurity) -> Self {
        Self {
            listener,
            protocol: security.protocol,
            principal: Arc::from(ANONYMOUS),
            mechanisms: security.sasl_mechanisms.clone(),
            reauth: (security.reauth_ms > 0).then(|| Duration::from_millis(security.reauth_ms)),
            state: if security.protocol.sasl() {
                SaslState::AwaitHandshake
            } else {
                SaslState::Off
            },
            expires: None,
            authenticated_before: false,
            throttled_until: None,
        }
    }

    /// Plaintext session for handler tests.
    #[cfg(test)]
    pub fn plaintext() -> Self {
        Self::new(
            Arc::from("PLAINTEXT"),
            &ListenerSecurity {
                protocol: SecurityProtocol::Plaintext,
                tls: None,
                sasl_mechanisms: vec![],
                reauth_ms: 0,
            },
        )
    }

    pub fn set_principal(&mut self, user: &str) {
        self.principal = Arc::from(format!("User:{user}"));
    }

    /// The user name without the `User:` prefix (quotas are keyed by it).
    pub fn user(&self) -> &str {
        self.principal
            .strip_prefix("User:")
            .unwrap_or(&self.principal)
    }

    /// Why a request other than the SASL ones may not be served now, if it may not.
    pub fn refuse(&self, api: kafka_protocol::messages::ApiKey) -> Option<String> {
        use kafka_protocol::messages::ApiKey;
        if matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            return None;
        }
        let expired = || {
            self.expires.is_some_and(|e| Instant::now() >= e).then(|| {
                "SASL session expired (connections.max.reauth.ms) and the client did not \
                     re-authenticate"
                    .to_string()
            })
        };
        if self.authenticated_before {
            // Re-authenticating (KIP-368): the session stands until it expires.
            return expired();
        }
        match self.state {
            SaslState::Off => None,
            _ => Some(format!(
                "unexpected {api:?} request before SASL authentication completed"
            )),
        }
    }

    fn authenticated(&mut self, user: &str) -> Result<i64, String> {
        let principal = format!("User:{user}");
        if self.authenticated_before && *self.principal != *principal {
            return Err(format!(
                "re-authentication as {principal} on a connection of {} is not allowed",
                self.principal
            ));
        }
        self.principal = Arc::from(principal);
        self.state = SaslState::Authenticated;
        self.authenticated_before = true;
        self.expires = self.reauth.map(|d| Instant::now() + d);
        Ok(self.reauth.map_or(0, |d| d.as_millis() as i64))
    }
}

fn respond_close<R: kafka_protocol::protocol::Encodable>(
    ctx: &RequestContext,
    body: &R,
    reason: String,
) -> Outcome {
    match encode_frame(ctx.api, ctx.version, ctx.correlation_id, body) {
        Ok(b) => Outcome::RespondClose(b, reason),
        Err(e) => Outcome::Close(e),
    }
}

pub fn handshake(
    ctx: &RequestContext,
    session: &mut Session,
    req: SaslHandshakeRequest,
) -> Outcome {
    let mechanisms: Vec<StrBytes> = session
        .mechanisms
        .iter()
        .map(|m| StrBytes::from_string(m.clone()))
        .collect();
    let mut resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    if ctx.version == 0 {
        resp.error_code = ResponseError::UnsupportedVersion.code();
        return respond_close(
            ctx,
            &resp,
            "SaslHandshake v0 (unframed SASL tokens) is not supported; clients use v1".into(),
        );
    }
    match session.state {
        SaslState::AwaitHandshake | SaslState::Authenticated => {}
        SaslState::Off => {
            resp.error_code = ResponseError::IllegalSaslState.code();
            return super::respond(ctx, resp);
        }
        _ => {
            resp.error_code = ResponseError::IllegalSaslState.code();
            return respond_close(ctx, &resp, "SaslHandshake during a SASL exchange".into());
        }
    }
    let mechanism = req.mechanism.to_string();
    if !session.mechanisms.contains(&mechanism) {
        resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
        ctx.broker
            .metrics
            .authentication_failure("unsupported_mechanism");
        ctx.broker.security.audit.authentication_failed(
            &ctx.peer.to_string(),
            &session.listener,
            &mechanism,
            "mechanism not enabled (sasl.enabled.mechanisms)",
        );
        return respond_close(
            ctx,
            &resp,
            format!("unsupported SASL mechanism {mechanism}"),
        );
    }
    session.state = SaslState::Mechanism(mechanism);
    super::respond(ctx, resp)
}

fn metric_name(mechanism: &str) -> &'static str {
    match mechanism {
        "PLAIN" => "PLAIN",
        "SCRAM-SHA-256" => "SCRAM-SHA-256",
        "SCRAM-SHA-512" => "SCRAM-SHA-512",
        _ => "other",
    }
}

pub async fn authenticate(
    ctx: &RequestContext,
    session: &mut Session,
    req: SaslAuthenticateRequest,
) -> Outcome {
    let state = std::mem::replace(&mut session.state, SaslState::AwaitHandshake);
    let (mechanism, result): (String, Result<Option<(Bytes, String)>, SaslError>) = match state {
        SaslState::Mechanism(m) if m == "PLAIN" => {
            let r = match parse_plain(&req.auth_bytes) {
                Err(e) => Err(e),
                Ok((user, password)) => {
                    let creds = ctx.broker.metadata.current().scram.get(&user).cloned();
                    // PBKDF2 takes milliseconds by design: not on the connection threads.
                    let ok = tokio::task::spawn_blocking(move || {
                        creds.is_some_and(|creds| {
                            creds
                                .iter()
                                .any(|(mech, cred)| cred.verify_password(*mech, &password))
                        })
                    })
                    .await
                    .unwrap_or(false);
                    if ok {
                        Ok(Some((Bytes::new(), user)))
                    } else {
                        Err(SaslError::Failed(format!(
                            "wrong password or unknown user '{user}'"
                        )))
                    }
                }
            };
            (m, r)
        }
        SaslState::Mechanism(m) => match ScramMechanism::from_name(&m) {
            Some(mech) => {
                let mut server = Box::new(ScramServer::new(mech));
                let md = ctx.broker.metadata.current();
                let r = server.client_first(&req.auth_bytes, |user| {
                    md.scram.get(user).and_then(|c| c.get(&mech)).cloned()
                });
                match r {
                    Ok(first) => {
                        session.state = SaslState::Scram(server, mech);
                        let resp =
                            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(first));
                        return super::respond(ctx, resp);
                    }
                    Err(e) => (m, Err(e)),
                }
            }
            None => (m, Err(SaslError::Malformed("unknown mechanism".into()))),
        },
        SaslState::Scram(mut server, mech) => {
            let r = server
                .client_final(&req.auth_bytes)
                .map(|(fin, user)| Some((Bytes::from(fin), user)));
            (mech.name().to_string(), r)
        }
        other => {
            session.state = other;
            let resp = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(msg("SaslAuthenticate without a SaslHandshake first"));
            return respond_close(ctx, &resp, "SaslAuthenticate out of order".into());
        }
    };
    let fail = |session: &Session, reason: String, client: String| {
        ctx.broker
            .metrics
            .authentication_failure(metric_name(&mechanism));
        ctx.broker.security.audit.authentication_failed(
            &ctx.peer.to_string(),
            &session.listener,
            &mechanism,
            &reason,
        );
        let resp = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(msg(client));
        respond_close(ctx, &resp, format!("SASL authentication failed: {reason}"))
    };
    match result {
        Ok(Some((bytes, user))) => match session.authenticated(&user) {
            Ok(lifetime) => {
                ctx.broker
                    .metrics
                    .authentication_success(metric_name(&mechanism));
                tracing::debug!(peer = %ctx.peer, listener = %session.listener, %user, %mechanism, "authenticated");
                let resp = SaslAuthenticateResponse::default()
                    .with_auth_bytes(bytes)
                    .with_session_lifetime_ms(lifetime);
                super::respond(ctx, resp)
            }
            Err(reason) => fail(session, reason.clone(), reason),
        },
        Ok(None) => fail(
            session,
            "no credential".into(),
            "authentication failed".into(),
        ),
        Err(e) => {
            let client = e.client_message(&mechanism);
            fail(session, e.to_string(), client)
        }
    }
}
