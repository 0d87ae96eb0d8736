//! Server-side SASL/PLAIN and SASL/SCRAM-SHA-256/512.
//!
//! Kafka clients authenticate with these mechanisms, so the broker has to speak them. Only
//! salted, iterated SCRAM keys are ever stored: a leaked credential store gives an attacker
//! neither the password nor anything that logs in directly with SASL/PLAIN.

use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// SCRAM hash functions Kafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];
    /// Kafka rejects weaker credentials in the admin API.
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Kafka caps iterations so a credential update can't make logins a CPU sink.
    pub const MAX_ITERATIONS: u32 = 16384;

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Case-sensitive, because Kafka matches mechanism names exactly.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Wire code used by DescribeUserScramCredentials / AlterUserScramCredentials.
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Self> {
        match t {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hash_len(self) -> usize {
        self.digest_alg().output_len()
    }
}

/// What the cluster stores per user and mechanism: never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// From a password (admin API, PLAIN checks). Random 32-byte salt when `salt` is None.
    pub fn from_password(
        mech: ScramMechanism,
        password: &[u8],
        salt: Option<&[u8]>,
        iterations: u32,
    ) -> Self {
        let salt = match salt {
            Some(salt) => salt.to_vec(),
            None => random_vec(32),
        };
        let salted = salted_password(mech, password, &salt, iterations);
        Self::from_salted_password(mech, &salted, &salt, iterations)
    }

    /// From what Kafka's AlterUserScramCredentials carries: SaltedPassword = Hi(password, salt, i).
    pub fn from_salted_password(
        mech: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = hmac_bytes(mech, salted_password, b"Client Key");
        Self {
            salt: salt.to_vec(),
            stored_key: hash_bytes(mech, &client_key),
            server_key: hmac_bytes(mech, salted_password, b"Server Key"),
            iterations,
        }
    }

    /// For SASL/PLAIN: recompute StoredKey from the password and compare in constant time.
    pub fn verify_password(&self, mech: ScramMechanism, password: &[u8]) -> bool {
        let salted = salted_password(mech, password, &self.salt, self.iterations);
        let client_key = hmac_bytes(mech, &salted, b"Client Key");
        ct_eq(&hash_bytes(mech, &client_key), &self.stored_key)
    }
}

/// Keys are binary; base64 keeps them readable in JSON metadata.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Wrong password / unknown user / bad proof: the client gets ONE generic message, the reason
    /// is for logs.
    #[error("authentication failed: {0}")]
    Failed(String),
    /// Malformed client message.
    #[error("invalid SASL message: {0}")]
    Malformed(String),
}

impl SaslError {
    /// What to put in the SaslAuthenticate error message. Failures all look alike so clients
    /// can't tell an unknown user from a wrong password.
    pub fn client_message(&self, mechanism: &str) -> String {
        match self {
            Self::Failed(_) => format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {mechanism}"
            ),
            Self::Malformed(reason) => format!("Invalid SASL/{mechanism} message: {reason}"),
        }
    }
}

fn malformed(reason: &str) -> SaslError {
    SaslError::Malformed(reason.to_owned())
}

fn failed(reason: impl Into<String>) -> SaslError {
    SaslError::Failed(reason.into())
}

/// RFC 4616 message: [authzid] NUL authcid NUL passwd. Returns (username, password).
/// authzid must be empty or equal to authcid (Kafka's rule); empty username/password are errors.
pub fn parse_plain(msg: &[u8]) -> Result<(String, Vec<u8>), SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected [authzid] NUL authcid NUL passwd"));
    };
    let authzid =
        std::str::from_utf8(authzid).map_err(|_| malformed("authorization id is not UTF-8"))?;
    let username = std::str::from_utf8(authcid).map_err(|_| malformed("user name is not UTF-8"))?;
    if username.is_empty() {
        return Err(malformed("empty user name"));
    }
    if passwd.is_empty() {
        return Err(malformed("empty password"));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(failed(format!(
            "authorization id {authzid:?} differs from user name {username:?}"
        )));
    }
    Ok((username.to_owned(), passwd.to_vec()))
}

/// Server side of one SCRAM exchange (two round trips).
pub struct ScramServer {
    mech: ScramMechanism,
    server_nonce: String,
    state: State,
}

enum State {
    Initial,
    AwaitingFinal(Box<Exchange>),
    Finished,
}

/// Everything client-final is checked against.
struct Exchange {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
    /// False when `credential` is a decoy for a user that doesn't exist.
    known_user: bool,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Initial => "initial",
            State::AwaitingFinal(_) => "awaiting-client-final",
            State::Finished => "finished",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mech)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    pub fn new(mech: ScramMechanism) -> Self {
        let mut bytes = [0u8; 24];
        fill_random(&mut bytes);
        // 24 bytes encode to 32 base64 characters without padding: printable and comma-free.
        Self::with_server_nonce(mech, STANDARD.encode(bytes))
    }

    /// Fixed nonce, for reproducing published test vectors.
    #[cfg(test)]
    pub fn with_nonce(mech: ScramMechanism, server_nonce: &str) -> Self {
        Self::with_server_nonce(mech, server_nonce.to_owned())
    }

    fn with_server_nonce(mech: ScramMechanism, server_nonce: String) -> Self {
        Self {
            mech,
            server_nonce,
            state: State::Initial,
        }
    }

    /// client-first -> server-first. `lookup` finds the user's stored credential for this
    /// mechanism. An unknown user gets a decoy salt and fails only at client-final, so the
    /// exchange doesn't reveal which users exist.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, SaslError> {
        let State::Initial = std::mem::replace(&mut self.state, State::Finished) else {
            return Err(malformed("unexpected client-first message"));
        };
        let first = parse_client_first(msg)?;
        if first.token_auth {
            return Err(failed("delegation tokens are not supported"));
        }
        let (credential, known_user) = match lookup(&first.username) {
            Some(credential) => (credential, true),
            None => (decoy_credential(self.mech, &first.username), false),
        };
        let nonce = format!("{}{}", first.client_nonce, self.server_nonce);
        let salt = STANDARD.encode(&credential.salt);
        let iterations = credential.iterations;
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        let reply = server_first.clone().into_bytes();
        self.state = State::AwaitingFinal(Box::new(Exchange {
            username: first.username,
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first,
            nonce,
            credential,
            known_user,
        }));
        Ok(reply)
    }

    /// client-final -> server-final ("v=<ServerSignature>"). Returns (server-final message,
    /// authenticated username).
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), SaslError> {
        let exchange = match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingFinal(exchange) => *exchange,
            State::Initial | State::Finished => {
                return Err(malformed("unexpected client-final message"));
            }
        };
        let mech = self.mech;
        let text =
            std::str::from_utf8(msg).map_err(|_| malformed("client-final message is not UTF-8"))?;
        // The proof is always the last attribute and is not part of AuthMessage.
        let proof_at = text
            .rfind(",p=")
            .ok_or_else(|| malformed("missing client proof"))?;
        let without_proof = &text[..proof_at];
        let proof_b64 = &text[proof_at + 3..];
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| malformed("missing channel binding attribute"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| malformed("missing nonce attribute"))?;
        // Any further attributes are extensions we don't use.
        let cbind = STANDARD
            .decode(cbind)
            .map_err(|_| malformed("channel binding attribute is not valid base64"))?;
        let proof = STANDARD
            .decode(proof_b64)
            .map_err(|_| malformed("client proof is not valid base64"))?;
        if proof.len() != mech.hash_len() {
            return Err(malformed("client proof has the wrong length"));
        }
        if cbind != exchange.gs2_header.as_bytes() {
            return Err(failed("channel binding does not match the GS2 header"));
        }
        // Kafka checks `endsWith`: librdkafka sends its client nonce again in front of
        // the combined nonce. The server nonce, which prevents replays, is still checked.
        if !nonce.ends_with(exchange.nonce.as_str()) {
            return Err(failed("nonce does not match"));
        }

        let auth_message = format!(
            "{},{},{}",
            exchange.client_first_bare, exchange.server_first, without_proof
        );
        let credential = &exchange.credential;
        // Same work for decoys as for real users, so timing doesn't reveal unknown users.
        let client_signature = hmac_bytes(mech, &credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok = ct_eq(&hash_bytes(mech, &client_key), &credential.stored_key);
        let username = exchange.username;
        if !exchange.known_user {
            return Err(failed(format!("unknown user {username:?}")));
        }
        if !proof_ok {
            return Err(failed(format!(
                "invalid client proof for user {username:?}"
            )));
        }
        let server_signature = hmac_bytes(mech, &credential.server_key, auth_message.as_bytes());
        let reply = format!("v={}", STANDARD.encode(server_signature)).into_bytes();
        Ok((reply, username))
    }
}

struct ClientFirst<'a> {
    gs2_header: &'a str,
    bare: &'a str,
    username: String,
    client_nonce: &'a str,
    token_auth: bool,
}

fn parse_client_first(msg: &[u8]) -> Result<ClientFirst<'_>, SaslError> {
    let text =
        std::str::from_utf8(msg).map_err(|_| malformed("client-first message is not UTF-8"))?;
    let (flag, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("missing GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(malformed("channel binding is not supported")),
        _ => return Err(malformed("invalid GS2 channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("missing GS2 header"))?;
    let gs2_header = &text[..text.len() - bare.len()];
    let authzid = if authzid.is_empty() {
        None
    } else {
        let name = authzid
            .strip_prefix("a=")
            .ok_or_else(|| malformed("invalid authorization id"))?;
        Some(decode_saslname(name)?)
    };

    let mut attrs = bare.split(',');
    let user_attr = attrs.next().unwrap_or_default();
    if user_attr.starts_with("m=") {
        return Err(malformed("mandatory extensions are not supported"));
    }
    let username = decode_saslname(
        user_attr
            .strip_prefix("n=")
            .ok_or_else(|| malformed("missing user name attribute"))?,
    )?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| malformed("missing nonce attribute"))?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(malformed("client nonce must be non-empty printable ASCII"));
    }
    // Kafka clients append extensions such as `tokenauth=true` after the nonce.
    let mut token_auth = false;
    for ext in attrs {
        let (key, value) = ext
            .split_once('=')
            .ok_or_else(|| malformed("invalid extension attribute"))?;
        if key.is_empty() {
            return Err(malformed("invalid extension attribute"));
        }
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            token_auth = true;
        }
    }
    if let Some(authzid) = authzid
        && authzid != username
    {
        return Err(failed(format!(
            "authorization id {authzid:?} differs from user name {username:?}"
        )));
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        username,
        client_nonce,
        token_auth,
    })
}

/// RFC 5802 saslname: ',' and '=' arrive escaped as "=2C" and "=3D".
fn decode_saslname(s: &str) -> Result<String, SaslError> {
    if s.is_empty() {
        return Err(malformed("empty user name"));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        match rest.get(pos..pos + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("invalid escape in user name")),
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A credential for a user that doesn't exist. The salt is stable per user name so repeated
/// probes see the same answer as for a real user; the keys never match any proof.
fn decoy_credential(mech: ScramMechanism, username: &str) -> ScramCredential {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        fill_random(&mut key);
        key
    });
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(mech.name().as_bytes());
    ctx.update(&[0]);
    ctx.update(username.as_bytes());
    ScramCredential {
        salt: ctx.sign().as_ref().to_vec(),
        stored_key: random_vec(mech.hash_len()),
        server_key: random_vec(mech.hash_len()),
        iterations: ScramMechanism::MIN_ITERATIONS,
    }
}

/// Hi(password, salt, i) from RFC 5802. Zero iterations (never accepted by the admin API) are
/// treated as one rather than panicking.
fn salted_password(mech: ScramMechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    let mut out = vec![0u8; mech.hash_len()];
    pbkdf2::derive(mech.pbkdf2_alg(), iterations, salt, password, &mut out);
    out
}

fn hmac_bytes(mech: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(mech.hmac_alg(), key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hash_bytes(mech: ScramMechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(mech.digest_alg(), data).as_ref().to_vec()
}

/// Timing must not reveal how many leading bytes of a key matched.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn random_vec(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_random(&mut out);
    out
}

/// The OS generator practically never fails, but panicking is not an option in the broker; the
/// fallback mixes clock, pid, a counter and std's OS-seeded hasher keys through SHA-512.
fn fill_random(buf: &mut [u8]) {
    if SystemRandom::new().fill(buf).is_ok() {
        return;
    }
    tracing::error!("system random number generator failed; using fallback entropy");
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for chunk in buf.chunks_mut(digest::SHA512_OUTPUT_LEN) {
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let hashed = std::collections::hash_map::RandomState::new().hash_one(count);
        let mut ctx = digest::Context::new(&digest::SHA512);
        ctx.update(&nanos.to_le_bytes());
        ctx.update(&std::process::id().to_le_bytes());
        ctx.update(&count.to_le_bytes());
        ctx.update(&hashed.to_le_bytes());
        let out = ctx.finish();
        chunk.copy_from_slice(&out.as_ref()[..chunk.len()]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Just enough of an RFC 5802 client to drive the server. Returns (client-final, expected
    /// server-final).
    fn client_final_for(
        mech: ScramMechanism,
        password: &[u8],
        client_first: &str,
        server_first: &str,
    ) -> (String, String) {
        let gs2_len = client_first
            .match_indices(',')
            .nth(1)
            .map(|(i, _)| i + 1)
            .unwrap();
        let (gs2_header, bare) = client_first.split_at(gs2_len);
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attr in server_first.split(',') {
            match attr.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = STANDARD.decode(v).unwrap(),
                ("i=", v) => iterations = v.parse().unwrap(),
                _ => panic!("unexpected server-first attribute {attr}"),
            }
        }
        let salted = salted_password(mech, password, &salt, iterations);
        let client_key = hmac_bytes(mech, &salted, b"Client Key");
        let stored_key = hash_bytes(mech, &client_key);
        let server_key = hmac_bytes(mech, &salted, b"Server Key");
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(gs2_header));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac_bytes(mech, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = hmac_bytes(mech, &server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)),
            format!("v={}", STANDARD.encode(server_signature)),
        )
    }

    /// Runs a whole exchange against a server that knows `user` with `stored_password`.
    fn exchange(
        mech: ScramMechanism,
        client_first: &str,
        client_password: &[u8],
        user: &str,
        stored_password: &[u8],
    ) -> Result<(String, String), SaslError> {
        let cred = ScramCredential::from_password(mech, stored_password, None, 4096);
        let mut server = ScramServer::new(mech);
        let server_first = server.client_first(client_first.as_bytes(), |u| {
            if u == user { Some(cred.clone()) } else { None }
        })?;
        let server_first = String::from_utf8(server_first).unwrap();
        let (client_final, expected) =
            client_final_for(mech, client_password, client_first, &server_first);
        let (server_final, username) = server.client_final(client_final.as_bytes())?;
        assert_eq!(String::from_utf8(server_final).unwrap(), expected);
        Ok((expected, username))
    }

    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mech = ScramMechanism::Sha256;
        ScramCredential::from_password(mech, b"pencil", Some(salt.as_slice()), 4096)
    }

    /// A server that has already answered the RFC 7677 client-first.
    fn rfc_server() -> ScramServer {
        let cred = rfc_credential();
        let mut server = ScramServer::with_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE);
        let server_first = server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |u| {
                (u == "user").then_some(cred)
            })
            .unwrap();
        assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
        server
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let mut server = rfc_server();
        let (server_final, user) = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
        assert_eq!(user, "user");
    }

    #[test]
    fn test_client_reproduces_rfc_vector() {
        let (client_final, server_final) = client_final_for(
            ScramMechanism::Sha256,
            b"pencil",
            RFC_CLIENT_FIRST,
            RFC_SERVER_FIRST,
        );
        assert_eq!(client_final, RFC_CLIENT_FINAL);
        assert_eq!(server_final, RFC_SERVER_FINAL);
    }

    #[test]
    fn sha512_round_trip() {
        let (_, user) = exchange(
            ScramMechanism::Sha512,
            "n,,n=alice,r=abc123",
            b"secret",
            "alice",
            b"secret",
        )
        .unwrap();
        assert_eq!(user, "alice");
    }

    #[test]
    fn sha256_round_trip_with_y_flag_and_authzid() {
        let (_, user) = exchange(
            ScramMechanism::Sha256,
            "y,a=bob,n=bob,r=xyz",
            b"hunter2",
            "bob",
            b"hunter2",
        )
        .unwrap();
        assert_eq!(user, "bob");
    }

    #[test]
    fn wrong_password_fails() {
        let err = exchange(
            ScramMechanism::Sha512,
            "n,,n=alice,r=abc123",
            b"wrong",
            "alice",
            b"secret",
        )
        .unwrap_err();
        assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
    }

    #[test]
    fn unknown_user_fails_only_at_client_final() {
        let mech = ScramMechanism::Sha512;
        let client_first = "n,,n=mallory,r=abc123";
        let mut first_answers = Vec::new();
        for _ in 0..2 {
            let mut server = ScramServer::new(mech);
            let server_first = server
                .client_first(client_first.as_bytes(), |_| None)
                .unwrap();
            let server_first = String::from_utf8(server_first).unwrap();
            assert!(server_first.ends_with(",i=4096"), "{server_first}");
            let (client_final, _) = client_final_for(mech, b"guess", client_first, &server_first);
            let err = server.client_final(client_final.as_bytes()).unwrap_err();
            assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
            // Everything after the nonce (salt, iterations) must be stable per user name.
            first_answers.push(server_first.split_once(",s=").unwrap().1.to_owned());
        }
        assert_eq!(first_answers[0], first_answers[1]);

        let mut server = ScramServer::new(mech);
        let other = server
            .client_first(b"n,,n=trudy,r=abc123", |_| None)
            .unwrap();
        let other = String::from_utf8(other).unwrap();
        assert_ne!(other.split_once(",s=").unwrap().1, first_answers[0]);
    }

    #[test]
    fn tampered_nonce_fails() {
        let mut server = rfc_server();
        let tampered = RFC_CLIENT_FINAL.replace("r=rOpr", "r=XOpr");
        let err = server.client_final(tampered.as_bytes()).unwrap_err();
        assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
    }

    #[test]
    fn tampered_channel_binding_fails() {
        let mut server = rfc_server();
        // "eSws" is base64("y,,"), but the client sent "n,,".
        let tampered = RFC_CLIENT_FINAL.replace("c=biws", "c=eSws");
        let err = server.client_final(tampered.as_bytes()).unwrap_err();
        assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
    }

    #[test]
    fn tampered_proof_fails() {
        let mut server = rfc_server();
        let tampered = RFC_CLIENT_FINAL.replace("p=dHzb", "p=eHzb");
        let err = server.client_final(tampered.as_bytes()).unwrap_err();
        assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
    }

    #[test]
    fn client_final_extensions_are_part_of_auth_message() {
        let mech = ScramMechanism::Sha256;
        let cred = ScramCredential::from_password(mech, b"pw", None, 4096);
        let mut server = ScramServer::new(mech);
        let client_first = "n,,n=u,r=nonce";
        let server_first = server
            .client_first(client_first.as_bytes(), |_| Some(cred))
            .unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        let (client_final, _) = client_final_for(mech, b"pw", client_first, &server_first);
        // Inserting an attribute after signing changes AuthMessage, so the proof must fail.
        let (head, proof) = client_final.split_once(",p=").unwrap();
        let altered = format!("{head},x=1,p={proof}");
        let err = server.client_final(altered.as_bytes()).unwrap_err();
        assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
    }

    #[test]
    fn escaped_usernames() {
        assert_eq!(decode_saslname("a=2Cb").unwrap(), "a,b");
        assert_eq!(decode_saslname("a=3Db=2C").unwrap(), "a=b,");
        assert!(matches!(
            decode_saslname("a=2cb"),
            Err(SaslError::Malformed(_))
        ));
        assert!(matches!(
            decode_saslname("a=4Fb"),
            Err(SaslError::Malformed(_))
        ));
        assert!(matches!(
            decode_saslname("ab="),
            Err(SaslError::Malformed(_))
        ));
        assert!(matches!(
            decode_saslname("ab=2"),
            Err(SaslError::Malformed(_))
        ));

        let (_, user) = exchange(
            ScramMechanism::Sha256,
            "n,,n=a=2Cb,r=abc",
            b"pw",
            "a,b",
            b"pw",
        )
        .unwrap();
        assert_eq!(user, "a,b");

        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let err = server
            .client_first(b"n,,n=a=XXb,r=abc", |_| None)
            .unwrap_err();
        assert!(matches!(err, SaslError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn client_first_rejections() {
        let malformed_cases: [&[u8]; 9] = [
            b"p=tls-unique,,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"x,,n=user,r=abc",
            b"n,b=user,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=abc,novalue",
            b"n,,n=us\xffer,r=abc",
        ];
        for msg in malformed_cases {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            let err = server.client_first(msg, |_| None).unwrap_err();
            assert!(matches!(err, SaslError::Malformed(_)), "{msg:?}: {err:?}");
        }

        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let err = server
            .client_first(b"n,,n=user,r=abc,tokenauth=true", |_| None)
            .unwrap_err();
        assert_eq!(
            err,
            SaslError::Failed("delegation tokens are not supported".into())
        );

        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let err = server
            .client_first(b"n,a=other,n=user,r=abc", |_| None)
            .unwrap_err();
        assert!(matches!(err, SaslError::Failed(_)), "{err:?}");
    }

    #[test]
    fn unknown_extensions_are_ignored() {
        let (_, user) = exchange(
            ScramMechanism::Sha256,
            "n,,n=user,r=abc,tokenauth=false,foo=bar",
            b"pw",
            "user",
            b"pw",
        )
        .unwrap();
        assert_eq!(user, "user");
    }

    #[test]
    fn state_order_is_enforced() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let err = server
            .client_final(RFC_CLIENT_FINAL.as_bytes())
            .unwrap_err();
        assert!(matches!(err, SaslError::Malformed(_)), "{err:?}");

        let mut server = rfc_server();
        let err = server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |_| None)
            .unwrap_err();
        assert!(matches!(err, SaslError::Malformed(_)), "{err:?}");

        let mut server = rfc_server();
        server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        let err = server
            .client_final(RFC_CLIENT_FINAL.as_bytes())
            .unwrap_err();
        assert!(matches!(err, SaslError::Malformed(_)), "{err:?}");
        let err = server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |_| None)
            .unwrap_err();
        assert!(matches!(err, SaslError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn debug_hides_secrets() {
        let server = rfc_server();
        let text = format!("{server:?}");
        assert!(text.contains("awaiting-client-final"), "{text}");
        assert!(!text.contains("W22Z"), "{text}");
        assert!(!text.contains(RFC_SERVER_NONCE), "{text}");
    }

    #[test]
    fn server_nonce_is_printable_and_comma_free() {
        let server = ScramServer::new(ScramMechanism::Sha512);
        assert_eq!(server.server_nonce.len(), 32);
        assert!(
            server
                .server_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        );
        assert_ne!(
            server.server_nonce,
            ScramServer::new(ScramMechanism::Sha512).server_nonce
        );
    }

    #[test]
    fn plain_parsing() {
        assert_eq!(
            parse_plain(b"\0user\0pass").unwrap(),
            ("user".to_owned(), b"pass".to_vec())
        );
        assert_eq!(
            parse_plain(b"user\0user\0pass").unwrap(),
            ("user".to_owned(), b"pass".to_vec())
        );
        assert!(matches!(
            parse_plain(b"admin\0user\0pass"),
            Err(SaslError::Failed(_))
        ));
        for msg in [
            &b"user\0pass"[..],
            b"userpass",
            b"",
            b"\0\0pass",
            b"\0user\0",
            b"a\0b\0c\0d",
            b"\0us\xffer\0pass",
        ] {
            assert!(
                matches!(parse_plain(msg), Err(SaslError::Malformed(_))),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn verify_password() {
        for mech in ScramMechanism::ALL {
            let cred = ScramCredential::from_password(mech, b"pencil", None, 4096);
            assert_eq!(cred.salt.len(), 32);
            assert_eq!(cred.stored_key.len(), mech.hash_len());
            assert!(cred.verify_password(mech, b"pencil"));
            assert!(!cred.verify_password(mech, b"pencil2"));
            assert!(!cred.verify_password(mech, b""));
        }
    }

    #[test]
    fn from_salted_password_matches_from_password() {
        for mech in ScramMechanism::ALL {
            let salt: &[u8] = b"NaCl-and-pepper";
            let salted = salted_password(mech, b"pencil", salt, 4096);
            assert_eq!(
                ScramCredential::from_salted_password(mech, &salted, salt, 4096),
                ScramCredential::from_password(mech, b"pencil", Some(salt), 4096)
            );
        }
    }

    #[test]
    fn credential_serde_round_trip() {
        let cred = rfc_credential();
        let json = serde_json::to_string(&cred).unwrap();
        assert!(
            json.contains("\"salt\":\"W22ZaJ0SNY7soEsUEjb6gQ==\""),
            "{json}"
        );
        let back: ScramCredential = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cred);
        assert!(serde_json::from_str::<ScramCredential>(&json.replace("W22Z", "!!!!")).is_err());
    }

    #[test]
    fn mechanism_names_and_codes() {
        for mech in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(mech.name()), Some(mech));
            assert_eq!(
                ScramMechanism::from_kafka_type(mech.kafka_type()),
                Some(mech)
            );
        }
        assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
        assert_eq!(ScramMechanism::Sha512.kafka_type(), 2);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_kafka_type(0), None);
    }

    #[test]
    fn client_messages() {
        let failed = SaslError::Failed("unknown user \"bob\"".into());
        assert_eq!(
            failed.client_message("SCRAM-SHA-512"),
            "Authentication failed during authentication due to invalid credentials with SASL \
             mechanism SCRAM-SHA-512"
        );
        let malformed = SaslError::Malformed("missing nonce attribute".into());
        assert!(
            malformed
                .client_message("PLAIN")
                .contains("missing nonce attribute")
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
