//! Produce v0-v2 (message format 0/1): advertised so librdkafka enables compression, but
//! answered with UNSUPPORTED_VERSION like Apache Kafka 4. kafka-protocol has no codecs for
//! these versions, so the few fields needed are read and written here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;

use super::Outcome;

fn get_str(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    (b.remaining() >= len).then(|| b.split_to(len))
}

fn get_i32(b: &mut Bytes) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

/// Answers every partition of a legacy produce request with UNSUPPORTED_VERSION.
pub fn reject(mut frame: Bytes, version: i16, correlation_id: i32) -> Outcome {
    let parsed = (|| {
        frame.advance(8); // api key, version, correlation id
        get_str(&mut frame)?; // client id
        if frame.remaining() < 6 {
            return None;
        }
        let acks = frame.get_i16();
        frame.get_i32(); // timeout
        let topics = get_i32(&mut frame)?;
        let mut out = Vec::new();
        for _ in 0..topics.clamp(0, 100_000) {
            let name = get_str(&mut frame)?;
            let partitions = get_i32(&mut frame)?;
            let mut ids = Vec::new();
            for _ in 0..partitions.clamp(0, 100_000) {
                ids.push(get_i32(&mut frame)?);
                let size = get_i32(&mut frame)?.max(0) as usize;
                if frame.remaining() < size {
                    return None;
                }
                frame.advance(size);
            }
            out.push((name, ids));
        }
        Some((acks, out))
    })();
    let Some((acks, topics)) = parsed else {
        return Outcome::Close(format!("malformed Produce v{version} request"));
    };
    if acks == 0 {
        return Outcome::Close(format!(
            "Produce v{version} (message format v0/v1) is not supported; closing the acks=0 connection"
        ));
    }
    let code = ResponseError::UnsupportedVersion.code();
    let mut body = BytesMut::new();
    body.put_i32(correlation_id);
    body.put_i32(topics.len() as i32);
    for (name, partitions) in &topics {
        body.put_i16(name.len() as i16);
        body.put_slice(name);
        body.put_i32(partitions.len() as i32);
        for p in partitions {
            body.put_i32(*p);
            body.put_i16(code);
            body.put_i64(-1); // base offset
            if version >= 2 {
                body.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        body.put_i32(0); // throttle time
    }
    let mut frame_out = BytesMut::with_capacity(4 + body.len());
    frame_out.put_i32(body.len() as i32);
    frame_out.put_slice(&body);
    Outcome::Respond(frame_out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_partition_with_unsupported_version() {
        let mut req = BytesMut::new();
        req.put_i16(0); // produce
        req.put_i16(2);
        req.put_i32(77);
        req.put_i16(3);
        req.put_slice(b"cli");
        req.put_i16(1); // acks
        req.put_i32(1000);
        req.put_i32(1);
        req.put_i16(1);
        req.put_slice(b"t");
        req.put_i32(2);
        for p in [0, 1] {
            req.put_i32(p);
            req.put_i32(3);
            req.put_slice(b"abc");
        }
        let Outcome::Respond(resp) = reject(req.freeze(), 2, 77) else {
            panic!("expected a response");
        };
        let mut r = resp;
        assert_eq!(r.get_i32() as usize, r.remaining());
        assert_eq!(r.get_i32(), 77);
        assert_eq!(r.get_i32(), 1);
        assert_eq!(r.get_i16(), 1);
        r.advance(1);
        assert_eq!(r.get_i32(), 2);
        assert_eq!(r.get_i32(), 0);
        assert_eq!(r.get_i16(), 35);
    }

    #[test]
    fn truncated_request_closes() {
        let mut req = BytesMut::new();
        req.put_i16(0);
        req.put_i16(0);
        req.put_i32(1);
        req.put_i16(-1);
        req.put_i16(1);
        assert!(matches!(reject(req.freeze(), 0, 1), Outcome::Close(_)));
    }
}
