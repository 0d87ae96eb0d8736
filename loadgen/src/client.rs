//! A minimal pipelining Kafka client connection: requests go out in order, responses
//! come back in order, matched by correlation id.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// TLS for every connection of this run (`--tls-ca`), or plaintext.
static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Connects over TLS from now on, trusting `ca` and presenting `identity` (mutual TLS)
/// when given.
pub fn use_tls(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let cfg = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
    };
    let _ = TLS.set(Arc::new(cfg));
    Ok(())
}

pub struct Connection {
    /// The address this connection was opened to, for error messages.
    pub addr: String,
    rd: Reader,
    wr: BufWriter<Writer>,
    next_correlation: i32,
    in_flight: VecDeque<(i32, ApiKey, i16, Instant)>,
    read_buf: BytesMut,
    /// Broker's (min, max) per API key.
    pub versions: Vec<(i16, i16, i16)>,
}

/// A decoded response and when its request was sent.
pub struct Received<R> {
    pub body: R,
    pub sent: Instant,
}

impl Connection {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (rd, wr): (Reader, Writer) = match TLS.get() {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
            Some(cfg) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                let (rd, wr) = tokio::io::split(tls);
                (Box::new(rd), Box::new(wr))
            }
        };
        let mut c = Self {
            addr: addr.to_string(),
            rd,
            wr: BufWriter::with_capacity(1 << 20, wr),
            next_correlation: 1,
            in_flight: VecDeque::new(),
            read_buf: BytesMut::with_capacity(1 << 20),
            versions: Vec::new(),
        };
        let resp: ApiVersionsResponse = c
            .call(
                ApiKey::ApiVersions,
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("sluice-loadgen"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    ))),
            )
            .await?;
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error {}", resp.error_code);
        }
        c.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(c)
    }

    /// Highest version of `key` both sides speak, within `ours`.
    pub fn pick_version(&self, key: ApiKey, ours: (i16, i16)) -> anyhow::Result<i16> {
        let (_, min, max) = self
            .versions
            .iter()
            .find(|(k, _, _)| *k == key as i16)
            .copied()
            .with_context(|| format!("broker does not support {key:?}"))?;
        let v = max.min(ours.1);
        if v < ours.0.max(min) {
            bail!(
                "no common version for {key:?}: broker {min}-{max}, loadgen {}-{}",
                ours.0,
                ours.1
            );
        }
        Ok(v)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues a request (buffered; call `flush`).
    pub async fn send<R: Request>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &R,
    ) -> anyhow::Result<()> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-loadgen")));
        let hv = R::header_version(version);
        let size = header.compute_size(hv)? + body.compute_size(version)?;
        let mut buf = BytesMut::with_capacity(4 + size);
        buf.put_i32(size as i32);
        header.encode(&mut buf, hv)?;
        body.encode(&mut buf, version)?;
        self.wr.write_all(&buf).await?;
        self.in_flight
            .push_back((correlation_id, key, version, Instant::now()));
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.wr.flush().await?;
        Ok(())
    }

    /// Reads the next response; its type must match the oldest request in flight.
    pub async fn recv<R: Decodable + HeaderVersion>(&mut self) -> anyhow::Result<Received<R>> {
        // Cancellation-safe: the request leaves the queue only once its whole response is
        // read; a partial frame stays in `read_buf` for the next call.
        let (correlation_id, key, version, sent) =
            *self.in_flight.front().context("no request in flight")?;
        while self.read_buf.len() < 4 {
            if self.rd.read_buf(&mut self.read_buf).await? == 0 {
                bail!("broker closed the connection");
            }
        }
        let size = i32::from_be_bytes([
            self.read_buf[0],
            self.read_buf[1],
            self.read_buf[2],
            self.read_buf[3],
        ]) as usize;
        self.read_buf.reserve(size + 4);
        while self.read_buf.len() < 4 + size {
            if self.rd.read_buf(&mut self.read_buf).await? == 0 {
                bail!("broker closed the connection mid-response");
            }
        }
        self.read_buf.advance(4);
        let mut frame: Bytes = self.read_buf.split_to(size).freeze();
        self.in_flight.pop_front();
        // ApiVersions responses always use header v0.
        let hv = if key == ApiKey::ApiVersions {
            0
        } else {
            R::header_version(version)
        };
        let header = ResponseHeader::decode(&mut frame, hv)?;
        if header.correlation_id != correlation_id {
            bail!(
                "correlation id {} does not match request {correlation_id}",
                header.correlation_id
            );
        }
        let body = R::decode(&mut frame, version)?;
        Ok(Received { body, sent })
    }

    pub async fn call<Q: Request, R: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Q,
    ) -> anyhow::Result<R> {
        self.send(key, version, body).await?;
        self.flush().await?;
        Ok(self.recv::<R>().await?.body)
    }

    /// `call`, failing if the response takes longer than `limit`. After such a failure
    /// the connection must not be used again (its request is still in flight).
    pub async fn call_within<Q: Request, R: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Q,
        limit: Duration,
    ) -> anyhow::Result<R> {
        match tokio::time::timeout(limit, self.call(key, version, body)).await {
            Ok(r) => r.with_context(|| format!("{key:?} to {}", self.addr)),
            Err(_) => bail!(
                "no {key:?} response from {} within {} ms",
                self.addr,
                limit.as_millis()
            ),
        }
    }
}
