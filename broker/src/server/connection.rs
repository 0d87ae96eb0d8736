//! One client connection: a reader task splits the byte stream into request frames while
//! this task handles them strictly in order and writes the responses, as Kafka does.
//! Pipelined requests are read ahead; responses keep request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::protocol::sasl::Session;
use crate::protocol::{Outcome, handle_frame};

/// Requests read ahead of the one being handled.
const READ_AHEAD: usize = 8;

#[derive(Debug)]
enum ReadEnd {
    Closed,
    Idle,
    Shutdown,
    TooLarge(i64),
    Error(std::io::Error),
}

async fn read_more<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    idle: Duration,
) -> Result<(), ReadEnd> {
    match tokio::time::timeout(idle, rd.read_buf(buf)).await {
        Err(_) => Err(ReadEnd::Idle),
        Ok(Ok(0)) => Err(ReadEnd::Closed),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ReadEnd::Error(e)),
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: mpsc::Sender<Bytes>,
    max_frame: usize,
    idle: Duration,
    broker: Arc<Broker>,
) -> ReadEnd {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let next = async {
            while buf.len() < 4 {
                read_more(&mut rd, &mut buf, idle).await?;
            }
            let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if size < 0 || size as usize > max_frame {
                return Err(ReadEnd::TooLarge(i64::from(size)));
            }
            let size = size as usize;
            if buf.len() < 4 + size {
                buf.reserve(4 + size - buf.len());
            }
            while buf.len() < 4 + size {
                read_more(&mut rd, &mut buf, idle).await?;
            }
            buf.advance(4);
            Ok(buf.split_to(size).freeze())
        };
        let frame = tokio::select! {
            f = next => f,
            _ = broker.shutdown.cancelled() => Err(ReadEnd::Shutdown),
        };
        match frame {
            Ok(frame) => {
                broker.metrics.bytes_in.inc_by(frame.len() as u64 + 4);
                if tx.send(frame).await.is_err() {
                    return ReadEnd::Closed;
                }
            }
            Err(end) => return end,
        }
    }
}

/// Serves one connection given its read and write halves (a TCP stream's own halves,
/// or those of a TLS stream).
pub async fn run<R, W>(broker: Arc<Broker>, rd: R, wr: W, peer: SocketAddr, mut session: Session)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let listener = session.listener.clone();
    let mut wr = BufWriter::with_capacity(32 * 1024, wr);
    let (tx, mut rx) = mpsc::channel::<Bytes>(READ_AHEAD);
    let max_frame = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut reader = tokio::spawn(read_frames(rd, tx, max_frame, idle, broker.clone()));

    while let Some(frame) = rx.recv().await {
        if let Some(until) = session.throttled_until.take() {
            // Kafka mutes a throttled client's channel: its next request waits.
            let _ = wr.flush().await;
            tokio::time::sleep_until(until.into()).await;
        }
        match handle_frame(&broker, frame, peer, &mut session).await {
            Outcome::Respond(bytes) => {
                let len = bytes.len() as u64;
                let mut result = wr.write_all(&bytes).await;
                if result.is_ok() && rx.is_empty() {
                    result = wr.flush().await;
                }
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "writing response failed; closing connection");
                    break;
                }
                broker.metrics.bytes_out.inc_by(len);
            }
            Outcome::NoResponse => {
                if rx.is_empty() && wr.flush().await.is_err() {
                    break;
                }
            }
            Outcome::Close(reason) => {
                tracing::warn!(%peer, listener = %listener, %reason, "closing connection");
                break;
            }
            Outcome::RespondClose(bytes, reason) => {
                // The client reads why (e.g. failed authentication) before the close.
                let _ = wr.write_all(&bytes).await;
                let _ = wr.flush().await;
                tracing::debug!(%peer, listener = %listener, %reason, "closing connection");
                break;
            }
        }
    }
    let _ = wr.flush().await;
    let end = match tokio::time::timeout(Duration::from_millis(10), &mut reader).await {
        Ok(Ok(end)) => Some(end),
        _ => {
            reader.abort();
            None
        }
    };
    match end {
        Some(ReadEnd::TooLarge(size)) => {
            broker.metrics.connection_error("oversized_request");
            tracing::warn!(%peer, listener = %listener, size, max = max_frame,
                "closing connection: request size is negative or exceeds socket.request.max.bytes");
        }
        Some(ReadEnd::Idle) => {
            broker.metrics.connection_error("idle_timeout");
            tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
        }
        Some(ReadEnd::Error(e)) => tracing::debug!(%peer, error = %e, "connection read failed"),
        Some(ReadEnd::Closed) | Some(ReadEnd::Shutdown) | None => {}
    }
}
