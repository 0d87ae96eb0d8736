"""A tiny raw-socket Kafka client for tests that must put exact bytes on the wire.

The hand-written builders here only cover non-flexible (pre-KIP-482) request versions:
their encoding is plain big-endian integers, int16-length strings and int32-length
arrays, which keeps this module small. Also holds a minimal Kafka v2 RecordBatch encoder
(with a pure-Python CRC32C) so tests can send valid and deliberately corrupted batches,
idempotent ones included.

Requests whose exact bytes do not matter, only their fields (the group membership APIs,
InitProducerId, flexible versions), are encoded and decoded with kafka-python's protocol
classes (kafka.protocol.*, generated from Kafka's JSON schemas) through `Connection`.
"""

import socket
import struct
import time

# API keys used by the tests.
PRODUCE = 0
METADATA = 3
API_VERSIONS = 18
DESCRIBE_CONFIGS = 32
INCREMENTAL_ALTER_CONFIGS = 44

FIND_COORDINATOR = 10
JOIN_GROUP = 11
INIT_PRODUCER_ID = 22

# Kafka error codes asserted by the tests.
NONE = 0
CORRUPT_MESSAGE = 2
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
MEMBER_ID_REQUIRED = 79
INVALID_RECORD = 87


class Writer:
    """Builds a request body field by field (big-endian, classic encodings)."""

    def __init__(self):
        self.parts = []

    def int8(self, v):
        self.parts.append(struct.pack(">b", v))
        return self

    def int16(self, v):
        self.parts.append(struct.pack(">h", v))
        return self

    def int32(self, v):
        self.parts.append(struct.pack(">i", v))
        return self

    def int64(self, v):
        self.parts.append(struct.pack(">q", v))
        return self

    def boolean(self, v):
        return self.int8(1 if v else 0)

    def string(self, s):
        """Nullable string: int16 length (-1 for None), then UTF-8 bytes."""
        if s is None:
            return self.int16(-1)
        b = s.encode() if isinstance(s, str) else s
        return self.int16(len(b)).raw(b)

    def bytes_(self, b):
        """Nullable bytes: int32 length (-1 for None), then the bytes."""
        if b is None:
            return self.int32(-1)
        return self.int32(len(b)).raw(b)

    def array(self, items, write_item):
        self.int32(len(items))
        for item in items:
            write_item(self, item)
        return self

    def raw(self, b):
        self.parts.append(bytes(b))
        return self

    def build(self):
        return b"".join(self.parts)


class Reader:
    """Parses a response body; every read checks that the bytes are there."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int8(self):
        return struct.unpack(">b", self._take(1))[0]

    def int16(self):
        return struct.unpack(">h", self._take(2))[0]

    def int32(self):
        return struct.unpack(">i", self._take(4))[0]

    def int64(self):
        return struct.unpack(">q", self._take(8))[0]

    def boolean(self):
        return self.int8() != 0

    def string(self):
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def array(self, read_item):
        n = self.int32()
        if n < 0:
            return None
        return [read_item(self) for _ in range(n)]

    def remaining(self):
        return len(self.data) - self.pos


def request(api_key, version, correlation_id, body, client_id="rawkafka"):
    """A complete frame: size prefix, request header v1, body."""
    header = Writer().int16(api_key).int16(version).int32(correlation_id).string(client_id).build()
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock, n, timeout=10.0):
    """Reads exactly n bytes before a deadline; raises EOFError if the peer closes first."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"read {len(buf)} of {n} bytes before the deadline")
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_response(sock, timeout=10.0):
    """Reads one response frame; returns (correlation_id, Reader positioned after it).

    Only for responses with header v0 (non-flexible APIs and ApiVersions)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4, timeout))
    if size < 4 or size > 64 << 20:
        raise ValueError(f"implausible response size {size}")
    r = Reader(recv_exact(sock, size, timeout))
    return r.int32(), r


def wait_closed(sock, timeout=10.0):
    """True if the peer closes the connection (EOF or reset) before the deadline, after
    discarding anything it sends; False if it stays open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not chunk:
            return True
    return False


# ---------------------------------------------------------------- ApiVersions

def api_versions_request(version, correlation_id):
    """ApiVersions v0-v2 have an empty body. Newer versions add fields, but a broker must
    answer an ApiVersions version it does not know from the header alone (KIP-511)."""
    return request(API_VERSIONS, version, correlation_id, b"")


def parse_api_versions_v0(r):
    """ApiVersions v0 response body: error_code, [api_key min max]. Returns
    (error_code, {api_key: (min, max)}) and checks nothing is left over."""
    error = r.int16()
    apis = r.array(lambda rd: (rd.int16(), rd.int16(), rd.int16()))
    if r.remaining() != 0:
        raise ValueError(f"{r.remaining()} unexpected bytes after ApiVersions v0 response")
    return error, {k: (lo, hi) for k, lo, hi in apis}


# ---------------------------------------------------------------- record batches

def _crc32c_table():
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def uvarint(n):
    """Unsigned varint (compact lengths of flexible versions)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):
    """Zig-zag varint as used inside v2 records."""
    return uvarint((n << 1) ^ (n >> 63))


def record_batch(records, base_timestamp, base_offset=0, producer_id=-1, producer_epoch=-1,
                 base_sequence=-1):
    """An uncompressed magic-2 RecordBatch.

    records: list of (key, value) byte strings (key may be None); record i gets
    timestamp base_timestamp + i and offset delta i. producer_id, producer_epoch and
    base_sequence make it an idempotent producer's batch (all -1: a plain one).

    Layout (KIP-98): baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8,
    crc u32, then the CRC-covered part: attributes i16, lastOffsetDelta i32,
    baseTimestamp i64, maxTimestamp i64, producerId i64, producerEpoch i16,
    baseSequence i32, record count i32, records."""
    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = bytearray()
        rec += b"\x00"  # record attributes
        rec += varint(i)  # timestamp delta
        rec += varint(i)  # offset delta
        if key is None:
            rec += varint(-1)
        else:
            rec += varint(len(key)) + key
        rec += varint(len(value)) + value
        rec += varint(0)  # no headers
        body += varint(len(rec)) + rec
    covered = struct.pack(
        ">hiqqqhii",
        0,  # attributes: no compression, CreateTime, not transactional
        len(records) - 1,
        base_timestamp,
        base_timestamp + len(records) - 1,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    ) + bytes(body)
    after_length = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(covered)) + covered
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


# Byte offset of the CRC field inside a batch, and of the first CRC-covered byte.
BATCH_CRC_POS = 8 + 4 + 4 + 1
BATCH_ATTRIBUTES_POS = BATCH_CRC_POS + 4


def parse_batches(data):
    """Splits a log segment (or record set) into (position, base_offset, record_count,
    total_length) of each complete batch, stopping at the first incomplete one."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack(">qi", data[pos:pos + 12])
        total = 12 + length
        if length < 49 or pos + total > len(data):
            break
        (count,) = struct.unpack(">i", data[pos + 57:pos + 61])
        out.append((pos, base_offset, count, total))
        pos += total
    return out


# ---------------------------------------------------------------- Produce v3

def produce_request_v3(correlation_id, topic, partition, records, acks=-1, timeout_ms=10000):
    """Produce v3 (the first version carrying magic-2 batches; non-flexible)."""
    body = (
        Writer()
        .string(None)  # transactional id
        .int16(acks)
        .int32(timeout_ms)
        .array([topic], lambda w, t: w.string(t).array(
            [partition], lambda w2, p: w2.int32(p).bytes_(records)))
        .build()
    )
    return request(PRODUCE, 3, correlation_id, body)


def parse_produce_response_v3(r):
    """Returns {(topic, partition): (error_code, base_offset)}; checks the trailing
    throttle time and that nothing is left over."""
    out = {}

    def partition(rd, topic):
        index, error, base_offset, _append_time = rd.int32(), rd.int16(), rd.int64(), rd.int64()
        out[(topic, index)] = (error, base_offset)

    def topic(rd):
        name = rd.string()
        rd.array(lambda rd2: partition(rd2, name))

    r.array(topic)
    r.int32()  # throttle time
    if r.remaining() != 0:
        raise ValueError(f"{r.remaining()} unexpected bytes after Produce v3 response")
    return out


# ---------------------------------------------------------------- configs (v0/v1)

def incremental_alter_configs_v0(correlation_id, resource_type, resource_name, ops,
                                 validate_only=False):
    """ops: list of (name, operation, value) with operation 0 SET, 1 DELETE."""
    body = (
        Writer()
        .array([0], lambda w, _: w.int8(resource_type).string(resource_name).array(
            ops, lambda w2, op: w2.string(op[0]).int8(op[1]).string(op[2])))
        .boolean(validate_only)
        .build()
    )
    return request(INCREMENTAL_ALTER_CONFIGS, 0, correlation_id, body)


def parse_incremental_alter_configs_v0(r):
    """Returns [(error_code, error_message, resource_type, resource_name)]."""
    r.int32()  # throttle time
    out = r.array(lambda rd: (rd.int16(), rd.string(), rd.int8(), rd.string()))
    if r.remaining() != 0:
        raise ValueError("unexpected bytes after IncrementalAlterConfigs v0 response")
    return out


def describe_configs_v1(correlation_id, resource_type, resource_name, keys=None):
    """One resource; keys None asks for every setting."""
    w = Writer().int32(1).int8(resource_type).string(resource_name)
    if keys is None:
        w.int32(-1)
    else:
        w.array(keys, lambda w2, k: w2.string(k))
    body = w.boolean(False).build()  # include synonyms: no
    return request(DESCRIBE_CONFIGS, 1, correlation_id, body)


def parse_describe_configs_v1(r):
    """Returns [(error_code, resource_type, resource_name, {name: (value, source)})]."""
    r.int32()  # throttle time

    def config(rd):
        name, value = rd.string(), rd.string()
        rd.boolean()  # read only
        source = rd.int8()
        rd.boolean()  # sensitive
        rd.array(lambda rd2: (rd2.string(), rd2.string(), rd2.int8()))  # synonyms
        return name, (value, source)

    def result(rd):
        error = rd.int16()
        rd.string()  # error message
        rtype, rname = rd.int8(), rd.string()
        return error, rtype, rname, dict(rd.array(config))

    out = r.array(result)
    if r.remaining() != 0:
        raise ValueError("unexpected bytes after DescribeConfigs v1 response")
    return out


def call(port, frame, timeout=10.0):
    """Sends one request on a fresh connection and returns (correlation_id, Reader)."""
    with connect(port, timeout) as s:
        s.sendall(frame)
        return recv_response(s, timeout)


# ---------------------------------------------------------------- kafka-python protocol classes

def kp_frame(message, correlation_id, client_id="rawkafka"):
    """A complete request frame for a kafka-python protocol message (an instance of a
    kafka.protocol.* Request class with its version set): size prefix, the request
    header version its API version calls for (v1, or v2 for flexible versions), body."""
    message.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(message.encode(header=True, framed=True))


class Connection:
    """One connection for request/response exchanges encoded with kafka-python's protocol
    classes. Requests may be pipelined: send() returns a ticket and recv(ticket) reads
    responses in order until that one, so a request the broker parks (a JoinGroup
    waiting for the other members) can be left outstanding while other connections
    talk. Responses are decoded with the class and version matching the request."""

    def __init__(self, port, timeout=10.0, client_id="rawkafka"):
        self.sock = connect(port, timeout)
        self.client_id = client_id
        self.next_id = 1
        self.pending = []  # [(correlation_id, response class)] in send order
        self.done = {}  # correlation_id -> decoded response read ahead of its recv()

    def send(self, message):
        cid = self.next_id
        self.next_id += 1
        self.sock.sendall(kp_frame(message, cid, self.client_id))
        self.pending.append((cid, message.header.get_response_class()))
        return cid

    def recv(self, ticket, timeout=10.0):
        """The response to the request `ticket` names, reading (and keeping) the responses
        to earlier requests first. Raises TimeoutError if it does not arrive in time."""
        deadline = time.monotonic() + timeout
        while ticket not in self.done:
            if not self.pending:
                raise ValueError(f"no outstanding request {ticket}")
            cid, response_class = self.pending[0]
            (size,) = struct.unpack(">i", recv_exact(self.sock, 4, max(0.01, deadline - time.monotonic())))
            if size < 4 or size > 64 << 20:
                raise ValueError(f"implausible response size {size}")
            data = recv_exact(self.sock, size, max(0.01, deadline - time.monotonic()))
            response = response_class.decode(data, header=True)
            if response.header.correlation_id != cid:
                raise ValueError(f"response correlation id {response.header.correlation_id}, expected {cid}")
            self.pending.pop(0)
            self.done[cid] = response
        return self.done.pop(ticket)

    def call(self, message, timeout=10.0):
        """send() then recv(): the decoded response."""
        return self.recv(self.send(message), timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def api_versions(port):
    """{api_key: (min, max)} as the broker advertises them (ApiVersions v0)."""
    _, r = call(port, api_versions_request(0, 1))
    error, apis = parse_api_versions_v0(r)
    if error != NONE:
        raise ValueError(f"ApiVersions v0 answered error {error}")
    return apis
