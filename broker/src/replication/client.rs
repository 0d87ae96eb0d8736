//! A Kafka protocol connection from a follower to its leader: one request at a time,
//! bodies encoded and decoded by `kafka-protocol`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Responses above this are refused (a corrupt size prefix must not allocate gigabytes).
const MAX_RESPONSE: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("leader {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("leader {addr}: no {key:?} response within {ms} ms")]
    Timeout { addr: String, key: ApiKey, ms: u128 },
    #[error("leader {addr}: {key:?}: {reason}")]
    Protocol {
        addr: String,
        key: ApiKey,
        reason: String,
    },
}

/// A TCP or TLS stream to the leader.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug> Stream
    for T
{
}

#[derive(Debug)]
pub struct LeaderConnection {
    addr: String,
    stream: Box<dyn Stream>,
    next_correlation: i32,
    client_id: StrBytes,
}

impl LeaderConnection {
    /// `tls`: the inter-broker listener's key material when it is an SSL listener (read
    /// at every connect, so rotated certificates are picked up).
    pub async fn connect(
        addr: &str,
        node_id: i32,
        timeout: Duration,
        tls: Option<&crate::config::security::TlsFiles>,
    ) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(r) => r.map_err(io)?,
            Err(_) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )));
            }
        };
        stream.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(stream),
            Some(files) => {
                let other = |e: String| io(std::io::Error::other(e));
                let cfg =
                    crate::security::tls::client_config(files).map_err(|e| other(e.to_string()))?;
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| other(format!("invalid TLS server name {host}: {e}")))?;
                let handshake = tokio_rustls::TlsConnector::from(cfg).connect(name, stream);
                match tokio::time::timeout(timeout, handshake).await {
                    Ok(r) => Box::new(r.map_err(|e| other(format!("TLS handshake: {e}")))?),
                    Err(_) => return Err(other("TLS handshake timed out".into())),
                }
            }
        };
        Ok(Self {
            addr: addr.to_string(),
            stream,
            next_correlation: 0,
            client_id: StrBytes::from_string(format!("sluice-replica-fetcher-{node_id}")),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request and reads its response. After an error the connection must be
    /// dropped (a response may still be in flight).
    pub async fn call<Q, R>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Q,
        timeout: Duration,
    ) -> Result<R, ClientError>
    where
        Q: Request,
        R: Decodable + HeaderVersion,
    {
        match tokio::time::timeout(timeout, self.exchange(key, version, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                key,
                ms: timeout.as_millis(),
            }),
        }
    }

    async fn exchange<Q, R>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Q,
    ) -> Result<R, ClientError>
    where
        Q: Request,
        R: Decodable + HeaderVersion,
    {
        let protocol = |reason: String| ClientError::Protocol {
            addr: self.addr.clone(),
            key,
            reason,
        };
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let hv = Q::header_version(version);
        let size = header
            .compute_size(hv)
            .and_then(|h| body.compute_size(version).map(|b| h + b))
            .map_err(|e| protocol(format!("cannot encode request: {e}")))?;
        let mut buf = BytesMut::with_capacity(4 + size);
        buf.put_i32(size as i32);
        header
            .encode(&mut buf, hv)
            .and_then(|()| body.encode(&mut buf, version))
            .map_err(|e| protocol(format!("cannot encode request: {e}")))?;
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(&buf).await.map_err(io)?;
        let len = self.stream.read_i32().await.map_err(io)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RESPONSE)
            .ok_or_else(|| protocol(format!("response size {len} out of range")))?;
        let mut frame = BytesMut::zeroed(len);
        self.stream.read_exact(&mut frame).await.map_err(io)?;
        let mut frame: Bytes = frame.freeze();
        let header = ResponseHeader::decode(&mut frame, R::header_version(version))
            .map_err(|e| protocol(format!("undecodable response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(protocol(format!(
                "correlation id {} does not match request {correlation_id}",
                header.correlation_id
            )));
        }
        let body = R::decode(&mut frame, version)
            .map_err(|e| protocol(format!("undecodable response: {e}")))?;
        if frame.has_remaining() {
            tracing::debug!(addr = %self.addr, ?key, extra = frame.remaining(), "response had trailing bytes");
        }
        Ok(body)
    }
}
