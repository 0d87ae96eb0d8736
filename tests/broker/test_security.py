"""Security end to end: TLS and SASL listeners (SCRAM-SHA-256/512, PLAIN), client
certificates and their principals, ACLs, client quotas, certificate rotation, SCRAM
credentials managed through the Kafka API and KIP-368 re-authentication.

Every broker is a real sluice-broker process (conftest.Broker) with a PLAINTEXT listener
first (readiness and helpers use it) and the secured listeners after it, all on ports it
picks itself. Certificates are made per test in tmp_path with the `cryptography`
package; users, ACLs and quotas are set through `sluice-broker admin` on the broker's
internal (gRPC) port or through the Kafka admin APIs. The clients are third-party ones:
confluent-kafka, kafka-python and kcat.
"""

import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kerrors
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
from kafka.admin import ResourceType as KResourceType
from kafka.structs import TopicPartition as KTopicPartition

import rawkafka
from clients import run_kcat
from conftest import BINARY
from kafkautil import close_producer, create_topic, metric, produce, read_records, wait_for, watermarks

MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:admin",
}
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
AUDIT_AUTH_FAILED = re.compile(r"sluice::audit.*authentication failed")


# ----------------------------------------------------------------------------- certificates


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _name(cn, org="Sluice"):
    # Most general first in the certificate; RFC 2253 prints it reversed: CN=...,O=Sluice.
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Issued:
    """A certificate and its key, written as PEM files: `<stem>.crt` (the certificate and
    its CA), `<stem>.key`, and `<stem>.pem` (key then chain: a PEM keystore)."""

    def __init__(self, directory: Path, stem: str, cert, key, ca_cert):
        self.cert, self.key = cert, key
        self.der = cert.public_bytes(serialization.Encoding.DER)
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
        self.crt_pem, self.key_pem = chain, _key_pem(key)
        self.crt = directory / f"{stem}.crt"
        self.keyfile = directory / f"{stem}.key"
        self.keystore = directory / f"{stem}.pem"
        self.crt.write_bytes(chain)
        self.keyfile.write_bytes(self.key_pem)
        self.keystore.write_bytes(self.key_pem + chain)

    @property
    def dn(self) -> str:
        return self.cert.subject.rfc4514_string()


class CA:
    """A throw-away certificate authority (EC P-256) whose certificate is `<dir>/<name>-ca.crt`."""

    def __init__(self, directory: Path, name="sluice-test-ca"):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name}-ca.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem, cn, server=False, valid_from=None, valid_to=None) -> Issued:
        """A leaf certificate for `cn` (O=Sluice). Server certificates carry the SANs
        IP:127.0.0.1 and DNS:localhost; client ones the clientAuth usage."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - datetime.timedelta(hours=1))
            .not_valid_after(valid_to or now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            ]), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return Issued(self.dir, stem, b.sign(self.key, hashes.SHA256()), key, self.cert)


# ----------------------------------------------------------------------------- broker helpers


def sluice_admin(b, *args, check=True):
    """`sluice-broker admin` against the broker's internal listener; returns the JSON."""
    out = subprocess.run(
        [str(BINARY), "admin", "--server", f"{b.host}:{b.internal_port}", *args],
        capture_output=True, text=True, timeout=60,
    )
    if check:
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return out


def add_user(b, name, password, *mechanisms):
    """Creates (or updates) a SCRAM user; every mechanism unless some are named."""
    args = ["user-set", name, "--password", password]
    for m in mechanisms:
        args += ["--mechanism", m]
    return sluice_admin(b, *args)


def add_acl(b, principal, operation, *resource):
    """e.g. add_acl(b, "User:bob", "READ", "--topic", "orders-", "--prefixed")."""
    return sluice_admin(b, "acl-add", "--principal", principal, "--operation", operation, *resource)


def log_size(b) -> int:
    return len(b.log_text())


def log_since(b, offset: int) -> str:
    return b.log_text()[offset:]


def audit_lines(b, offset=0):
    """The `authentication failed` audit lines (target sluice::audit) logged after `offset`."""
    return [line for line in log_since(b, offset).splitlines() if AUDIT_AUTH_FAILED.search(line)]


def auth_metric(b, family, mechanism):
    """A counter of the sluice_authentication_{successes,failures} family for one reason label."""
    text = b.metrics()
    for name in (f"sluice_authentication_{family}_total", f"authentication_{family}_total"):
        v = metric(text, name, reason=mechanism)
        if v is not None:
            return v
    return 0.0


# ----------------------------------------------------------------------------- client settings


def sasl_conf(b, listener, user, password, mechanism, ca=None):
    """confluent-kafka (librdkafka) settings for a SASL listener; with `ca`, TLS that
    verifies the broker certificate and its name (127.0.0.1 is in its SANs)."""
    conf = {
        "bootstrap.servers": b.bootstrap_for(listener),
        "security.protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if ca:
        conf.update({"ssl.ca.location": str(ca), "ssl.endpoint.identification.algorithm": "https"})
    return conf


def ssl_conf(b, listener, ca, client: Issued | None = None):
    """confluent-kafka settings for an SSL listener, with a client certificate if given."""
    conf = {
        "bootstrap.servers": b.bootstrap_for(listener),
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
    }
    if client is not None:
        conf.update({"ssl.certificate.location": str(client.crt), "ssl.key.location": str(client.keyfile)})
    return conf


def kp_sasl(b, listener, user, password, mechanism, ca=None):
    """kafka-python settings matching sasl_conf()."""
    conf = {
        "bootstrap_servers": b.bootstrap_for(listener),
        "security_protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }
    if ca:
        conf.update({"ssl_cafile": str(ca), "ssl_check_hostname": True})
    return conf


def plain_conf(b):
    return {"bootstrap.servers": b.bootstrap}


def admin_client(conf) -> AdminClient:
    return AdminClient(dict(conf))


def values(tag, n):
    return [f"{tag}-{i:05d}-".encode() + b"v" * (i % 37) for i in range(n)]


def consume_values(conf, topic, n, partition=0, timeout=30):
    """The values of the first `n` records of a partition, read with confluent-kafka."""
    rest = {k: v for k, v in conf.items() if k != "bootstrap.servers"}
    return [v for _, _, v in read_records(conf["bootstrap.servers"], topic, partition, 0, n, timeout, **rest)]


def delivery_results(conf, topic, vals, timeout=20, **extra):
    """Produces `vals` to partition 0 with confluent-kafka and waits for every delivery
    report (or `timeout`); returns one entry per record: None if delivered, else the
    KafkaError code. Nothing is left queued when it returns."""
    p = Producer({**conf, "acks": "all", "message.timeout.ms": int(timeout * 1000) - 2000, **extra})
    results = [KeyError] * len(vals)

    def cb(i):
        def done(err, msg):
            results[i] = None if err is None else err.code()
        return done

    try:
        for i, v in enumerate(vals):
            p.produce(topic, value=v, partition=0, on_delivery=cb(i))
        p.flush(timeout)
    finally:
        close_producer(p)
    assert KeyError not in results, f"no delivery report within {timeout}s: {results}"
    return results


def high_watermark(conf, topic, partition=0):
    """The partition's high watermark, asked with the given client settings."""
    c = Consumer({**conf, "group.id": "sluice-tests", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def kp_produce_values(conf, topic, vals, timeout=30):
    """Produces with kafka-python (acks=all) and waits for every record; returns offsets."""
    p = KafkaProducer(acks="all", request_timeout_ms=15000, **conf)
    try:
        futures = [p.send(topic, value=v, partition=0) for v in vals]
        p.flush(timeout=timeout)
        return [f.get(timeout=timeout).offset for f in futures]
    finally:
        p.close(timeout=10)


def kp_consume_values(conf, topic, n, timeout=30):
    """The values of the first `n` records of partition 0, read with kafka-python."""
    c = KafkaConsumer(enable_auto_commit=False, group_id=None, request_timeout_ms=15000, **conf)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=1000, max_records=n - len(out)).values():
                out.extend(r.value for r in recs)
        return out
    finally:
        c.close()


# ----------------------------------------------------------------------------- 1. SASL_SSL


@pytest.mark.timeout(120)
def test_scram_sha_512_over_sasl_ssl_with_both_python_clients(broker_factory, tmp_path):
    """A SASL_SSL listener (PEM keystore with key and chain) and a SCRAM-SHA-512 user made
    with `sluice-broker admin user-set`: confluent-kafka and kafka-python, both verifying
    the broker certificate against the CA and its SAN 127.0.0.1, each produce records
    and read back every record of both, value for value in offset order. The listener
    is reached through the Metadata the broker advertises on it, so a wrong advertised
    port or protocol would fail the clients too."""
    ca = CA(tmp_path / "pki")
    server = ca.issue("server", "broker", server=True)
    b = broker_factory({"ssl.keystore.location": str(server.keystore), "sasl.enabled.mechanisms": MECHANISMS},
                       listeners=["SASL_SSL"])
    user = add_user(b, "alice", "alice-secret", "SCRAM-SHA-512")
    assert user["name"] == "alice" and [c["mechanism"] for c in user["credentials"]] == ["SCRAM-SHA-512"], user
    assert "alice" in [u["name"] for u in sluice_admin(b, "users")]
    create_topic(b, "sasl-ssl")

    conf = sasl_conf(b, "SASL_SSL", "alice", "alice-secret", "SCRAM-SHA-512", ca=ca.path)
    first = values("confluent", 300)
    reports = produce(conf["bootstrap.servers"], "sasl-ssl", first, partition=0,
                      **{k: v for k, v in conf.items() if k != "bootstrap.servers"})
    assert [o for _, o in reports] == list(range(300))

    kconf = kp_sasl(b, "SASL_SSL", "alice", "alice-secret", "SCRAM-SHA-512", ca=ca.path)
    second = values("kafka-python", 200)
    assert kp_produce_values(kconf, "sasl-ssl", second) == list(range(300, 500))

    assert consume_values(conf, "sasl-ssl", 500) == first + second
    assert kp_consume_values(kconf, "sasl-ssl", 500) == first + second
    assert watermarks(b, "sasl-ssl", 0) == (0, 500)
    assert auth_metric(b, "successes", "SCRAM-SHA-512") >= 4, b.metrics()


# ----------------------------------------------------------------------------- 2. kcat, PLAIN


@pytest.mark.timeout(120)
def test_kcat_plain_over_sasl_plaintext(broker_factory):
    """kcat (Debian's, librdkafka 2.0) with SASL PLAIN on a SASL_PLAINTEXT listener: PLAIN
    checks the password against the user's SCRAM credential. 1000 keyed lines go in with
    -P and come back with -C -e, each at its offset with its key and value; -L as the
    same user lists the topic."""
    b = broker_factory({"sasl.enabled.mechanisms": MECHANISMS}, listeners=["SASL_PLAINTEXT"])
    add_user(b, "kat", "kat-pw", "SCRAM-SHA-256")
    create_topic(b, "kcat-plain")
    sasl = ["-b", b.bootstrap_for("SASL_PLAINTEXT"), "-X", "security.protocol=SASL_PLAINTEXT",
            "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=kat", "-X", "sasl.password=kat-pw"]
    lines = [(f"k{i % 17}", f"line-{i:04d}") for i in range(1000)]
    rc, _, err = run_kcat(["-P", *sasl, "-t", "kcat-plain", "-p", "0", "-K", ":", "-X", "acks=all"],
                          input_bytes="".join(f"{k}:{v}\n" for k, v in lines).encode(), timeout=60)
    assert rc == 0, err.decode()[-2000:]
    rc, out, err = run_kcat(["-C", *sasl, "-t", "kcat-plain", "-o", "beginning", "-e", "-q",
                             "-f", "%o|%k|%s\n"], timeout=60)
    assert rc == 0, err.decode()[-2000:]
    got = [tuple(line.split("|")) for line in out.decode().splitlines()]
    assert got == [(str(i), k, v) for i, (k, v) in enumerate(lines)]
    rc, out, err = run_kcat(["-L", *sasl, "-t", "kcat-plain"], timeout=30)
    assert rc == 0 and 'topic "kcat-plain" with 1 partitions' in out.decode(), (out, err)
    assert auth_metric(b, "successes", "PLAIN") >= 3, b.metrics()


# ----------------------------------------------------------------------------- 3. mTLS


@pytest.mark.timeout(120)
def test_mtls_principal_is_what_acls_see(broker_factory, tmp_path):
    """Two SSL listeners that require client certificates signed by the test CA: `SSL`
    with the default principal mapping (the subject DN in RFC 2253 form, most specific
    first: `User:CN=alice,O=Sluice`) and `MAPPED` with
    `ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT` (`User:alice`). With
    the authorizer on, each of those principals has READ/WRITE on its own topic only, so
    the same certificate may use `alice-dn` on one listener and `alice-short` on the
    other, and each listener's Metadata shows only the topic its principal may use. A
    certificate without ACLs sees nothing. The super user is a certificate DN too."""
    ca = CA(tmp_path / "pki")
    server = ca.issue("server", "broker", server=True)
    admin_cert, alice, carol = (ca.issue(n, n) for n in ("admin", "alice", "carol"))
    assert alice.dn == "CN=alice,O=Sluice"
    b = broker_factory({
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MAPPED:SSL",
        "ssl.certificate.location": str(server.crt),
        "ssl.key.location": str(server.keyfile),
        "ssl.truststore.location": str(ca.path),
        "ssl.client.auth": "required",
        "listener.name.mapped.ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
        **AUTHORIZER,
        "super.users": "User:CN=admin,O=Sluice",
    }, listeners=["SSL", "MAPPED"])
    a = admin_client(ssl_conf(b, "SSL", ca.path, admin_cert))
    fs = a.create_topics([NewTopic(t, 1, 1) for t in ("alice-dn", "alice-short", "other")], operation_timeout=30)
    for f in fs.values():
        f.result(30)
    for principal, topic in (("User:CN=alice,O=Sluice", "alice-dn"), ("User:alice", "alice-short")):
        for op in ("READ", "WRITE"):
            add_acl(b, principal, op, "--topic", topic)
        add_acl(b, principal, "READ", "--group", "sluice-tests")
    acls = sluice_admin(b, "acls")
    assert {(x["principal"], x["resource_name"], x["operation"]) for x in acls} >= {
        ("User:CN=alice,O=Sluice", "alice-dn", "WRITE"), ("User:alice", "alice-short", "READ")}, acls

    for listener, mine, theirs in (("SSL", "alice-dn", "alice-short"), ("MAPPED", "alice-short", "alice-dn")):
        conf = ssl_conf(b, listener, ca.path, alice)
        vals = values(f"{listener}-alice", 100)
        assert delivery_results(conf, mine, vals) == [None] * 100, listener
        assert consume_values(conf, mine, 100) == vals, listener
        assert delivery_results(conf, theirs, [b"nope"]) == [KafkaError.TOPIC_AUTHORIZATION_FAILED], listener
        md = admin_client(conf).list_topics(timeout=15)
        assert set(md.topics) == {mine}, (listener, md.topics)
    admin_conf = ssl_conf(b, "SSL", ca.path, admin_cert)
    assert high_watermark(admin_conf, "alice-short") == 100 and high_watermark(admin_conf, "alice-dn") == 100

    # A valid certificate of a principal without ACLs: authenticated, but sees and may do nothing.
    conf = ssl_conf(b, "SSL", ca.path, carol)
    assert admin_client(conf).list_topics(timeout=15).topics == {}
    assert delivery_results(conf, "other", [b"x"]) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    log = b.log_text()
    assert re.search(r"sluice::audit.*authorization denied.*principal=User:CN=alice,O=Sluice.*resource=alice-short",
                     log), log[-3000:]
    assert re.search(r"sluice::audit.*authorization denied.*principal=User:alice\b.*resource=alice-dn", log)
    assert re.search(r"sluice::audit.*authorization denied.*principal=User:CN=carol,O=Sluice", log)


# ----------------------------------------------------------------------------- 4. authentication failures


def confluent_auth_errors(conf, topic, timeout=15):
    """Starts a confluent-kafka producer, queues one record for `topic` and waits until
    the client reports an error (error_cb) or its delivery report arrives. Returns
    (error codes seen, delivery result: None if delivered, else the error code, or
    "pending"). Reconnects are spaced out so one attempt is made per case."""
    errors, delivered = [], []
    p = Producer({**conf, "error_cb": errors.append, "reconnect.backoff.ms": 5000,
                  "reconnect.backoff.max.ms": 10000, "message.timeout.ms": timeout * 1000})
    try:
        p.produce(topic, value=b"must-not-land", on_delivery=lambda err, msg: delivered.append(err))
        deadline = time.monotonic() + timeout
        while not errors and not delivered and time.monotonic() < deadline:
            p.poll(0.1)
    finally:
        close_producer(p)
    result = "pending" if not delivered else (None if delivered[0] is None else delivered[0].code())
    return [e.code() for e in errors], result


def kp_bootstrap_failure(conf, caplog):
    """kafka-python cannot bootstrap: the producer constructor raises once its bootstrap
    timeout passes. Returns the reasons the client logged for the failed connections."""
    caplog.clear()
    with caplog.at_level("WARNING", logger="kafka"):
        with pytest.raises(kerrors.KafkaTimeoutError, match="Unable to bootstrap"):
            p = KafkaProducer(bootstrap_timeout_ms=2000, reconnect_backoff_ms=5000, **conf)
            p.close(timeout=5)
    return [r.getMessage() for r in caplog.records if "Bootstrap connection" in r.getMessage()]


def wait_audit(b, offset, *needles, timeout=10):
    """The first `authentication failed` audit line after `offset` containing every needle."""
    found = []

    def check():
        found[:] = [line for line in audit_lines(b, offset) if all(n in line for n in needles)]
        return bool(found)

    assert wait_for(check, timeout), f"no audit line with {needles}; audit lines: {audit_lines(b, offset)}"
    return found[0]


@pytest.mark.timeout(180)
def test_authentication_failures_are_refused_and_audited(broker_factory, tmp_path, caplog):
    """Wrong passwords and unknown users (SCRAM-SHA-512 on SASL_SSL, PLAIN on
    SASL_PLAINTEXT), an expired client certificate, one from a CA the broker does not
    trust and none at all on an SSL listener with ssl.client.auth=required. Each client
    (confluent-kafka, kafka-python) gets an authentication or TLS error, the broker
    writes an `authentication failed` line (target sluice::audit) naming the listener,
    mechanism and reason, and nothing reaches the broker: the pre-created topic stays
    empty and the topic the clients asked for is never auto-created (Metadata would
    create it). Valid credentials on the same listeners work (control). A raw
    connection that sends Metadata before authenticating on a SASL listener is closed."""
    ca, rogue_ca = CA(tmp_path / "pki"), CA(tmp_path / "rogue", "rogue-ca")
    server = ca.issue("server", "broker", server=True)
    good = ca.issue("alice", "alice")
    expired = ca.issue("expired", "alice", valid_from=_now() - datetime.timedelta(days=10),
                       valid_to=_now() - datetime.timedelta(days=1))
    rogue = rogue_ca.issue("rogue", "alice")
    b = broker_factory({
        "ssl.certificate.location": str(server.crt),
        "ssl.key.location": str(server.keyfile),
        "listener.name.ssl.ssl.truststore.location": str(ca.path),
        "listener.name.ssl.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": MECHANISMS,
    }, listeners=["SASL_SSL", "SSL", "SASL_PLAINTEXT"])
    add_user(b, "alice", "right")
    create_topic(b, "guarded")

    sasl_cases = [
        ("SCRAM wrong password", sasl_conf(b, "SASL_SSL", "alice", "wrong", "SCRAM-SHA-512", ca=ca.path),
         ("listener=SASL_SSL", "mechanism=SCRAM-SHA-512", '"alice"')),
        ("SCRAM unknown user", sasl_conf(b, "SASL_SSL", "mallory", "right", "SCRAM-SHA-512", ca=ca.path),
         ("listener=SASL_SSL", "mechanism=SCRAM-SHA-512", "mallory")),
        ("PLAIN wrong password", sasl_conf(b, "SASL_PLAINTEXT", "alice", "wrong", "PLAIN"),
         ("listener=SASL_PLAINTEXT", "mechanism=PLAIN", "'alice'")),
        ("PLAIN unknown user", sasl_conf(b, "SASL_PLAINTEXT", "mallory", "right", "PLAIN"),
         ("listener=SASL_PLAINTEXT", "mechanism=PLAIN", "'mallory'")),
    ]
    # Half the clients want the existing topic, half one that does not exist yet. One
    # attempt each keeps the audit lines under the log's rate limit (20 per 10 s).
    for i, (case, conf, needles) in enumerate(sasl_cases):
        offset = log_size(b)
        errors, delivered = confluent_auth_errors(conf, ("guarded", "auth-probe")[i % 2])
        assert KafkaError._AUTHENTICATION in errors and delivered != None, (case, errors, delivered)  # noqa: E711
        wait_audit(b, offset, *needles)

    # TLS: the broker aborts the handshake; the client sees the alert when it reads.
    tls_refused = (KafkaError._TRANSPORT, KafkaError._SSL, KafkaError._AUTHENTICATION)
    for case, client, needle, topic in (("expired certificate", expired, "certificate expired", "guarded"),
                                        ("no certificate", None, "peer sent no certificates", "auth-probe")):
        offset = log_size(b)
        errors, delivered = confluent_auth_errors(ssl_conf(b, "SSL", ca.path, client), topic)
        assert any(e in tls_refused for e in errors) and delivered != None, (case, errors)  # noqa: E711
        wait_audit(b, offset, "listener=SSL", "mechanism=TLS", needle)

    # librdkafka does not present a certificate whose issuer is not among the CAs the
    # server asks for, so the untrusted-CA case uses clients on Python's ssl module.
    offset = log_size(b)
    ctx = ssl.create_default_context(cafile=str(ca.path))
    ctx.load_cert_chain(str(rogue.crt), str(rogue.keyfile))
    with socket.create_connection(("127.0.0.1", b.ports["SSL"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
                tls.sendall(rawkafka.api_versions_request(0, 1))
                tls.recv(4096)
    wait_audit(b, offset, "listener=SSL", "mechanism=TLS", "UnknownIssuer")

    kp_tls = {"bootstrap_servers": b.bootstrap_for("SSL"), "security_protocol": "SSL", "ssl_cafile": str(ca.path)}
    kp_cases = [
        (kp_sasl(b, "SASL_SSL", "alice", "wrong", "SCRAM-SHA-512", ca=ca.path), "SaslAuthenticationFailedError",
         ("listener=SASL_SSL", "mechanism=SCRAM-SHA-512")),
        (kp_sasl(b, "SASL_PLAINTEXT", "mallory", "right", "PLAIN"), "SaslAuthenticationFailedError",
         ("listener=SASL_PLAINTEXT", "mechanism=PLAIN", "'mallory'")),
        ({**kp_tls, "ssl_certfile": str(rogue.crt), "ssl_keyfile": str(rogue.keyfile)}, "UNKNOWN_CA",
         ("listener=SSL", "UnknownIssuer")),
        ({**kp_tls, "ssl_certfile": str(expired.crt), "ssl_keyfile": str(expired.keyfile)}, "CERTIFICATE_EXPIRED",
         ("listener=SSL", "certificate expired")),
    ]
    for conf, client_error, needles in kp_cases:
        offset = log_size(b)
        reasons = kp_bootstrap_failure(conf, caplog)
        assert reasons and all(client_error in r for r in reasons), reasons
        wait_audit(b, offset, *needles)

    # Nothing got through: no record, and no Metadata request that would have created auth-probe.
    assert watermarks(b, "guarded", 0) == (0, 0)
    assert "auth-probe" not in admin_client(plain_conf(b)).list_topics(timeout=10).topics
    assert auth_metric(b, "successes", "SCRAM-SHA-512") == 0 and auth_metric(b, "successes", "PLAIN") == 0
    assert auth_metric(b, "failures", "SCRAM-SHA-512") >= 3 and auth_metric(b, "failures", "PLAIN") >= 3

    # Control: the right credentials on the same listeners get through.
    for conf in (sasl_conf(b, "SASL_SSL", "alice", "right", "SCRAM-SHA-512", ca=ca.path),
                 sasl_conf(b, "SASL_PLAINTEXT", "alice", "right", "PLAIN"),
                 ssl_conf(b, "SSL", ca.path, good)):
        assert delivery_results(conf, "guarded", [b"ok"]) == [None], conf["bootstrap.servers"]
    assert watermarks(b, "guarded", 0) == (0, 3)

    # Raw: ApiVersions is answered before authentication, Metadata closes the connection,
    # both right after connecting and between SaslHandshake and SaslAuthenticate.
    port = b.ports["SASL_PLAINTEXT"]
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.api_versions_request(0, 1))
        assert rawkafka.recv_response(s)[0] == 1
        s.sendall(rawkafka.request(rawkafka.METADATA, 0, 2, rawkafka.Writer().int32(0).build()))
        assert rawkafka.wait_closed(s), "Metadata before authentication was served"
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.request(SASL_HANDSHAKE, 1, 1, rawkafka.Writer().string("PLAIN").build()))
        cid, r = rawkafka.recv_response(s)
        assert cid == 1 and r.int16() == 0
        s.sendall(rawkafka.request(rawkafka.METADATA, 0, 2, rawkafka.Writer().int32(0).build()))
        assert rawkafka.wait_closed(s), "Metadata between SaslHandshake and SaslAuthenticate was served"
    assert wait_for(lambda: b.log_text().count("before SASL authentication completed") >= 2, 5), b.log_tail()


# ----------------------------------------------------------------------------- 5. ACLs


# A group joins at once (no initial rebalance delay) and offsets live in few partitions.
FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "2"}


def group_consume(conf, topic, group, n, timeout=30):
    """Subscribes to `topic` in consumer group `group` (from the earliest offset) and
    reads until `n` records arrive, an error event comes or `timeout` passes; commits
    what it read. Returns (values, error codes)."""
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": False})
    out, errors = [], []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < n and not errors and time.monotonic() < deadline:
            for m in c.consume(num_messages=n - len(out), timeout=0.5):
                if m.error() is not None:
                    errors.append(m.error().code())
                else:
                    out.append(m.value())
        if out and not errors:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return out, errors


def assigned_fetch_errors(conf, topic, timeout=15):
    """Assigns partition 0 of `topic` at offset 0 and returns the first error event's
    code, or the records read if none comes within `timeout`."""
    c = Consumer({**conf, "group.id": "bob-assign", "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        got = []
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=0.5):
                if m.error() is not None:
                    return m.error().code()
                got.append(m.value())
        return got
    finally:
        c.close()


def admin_error(future, timeout=15):
    """The KafkaError code a confluent-kafka admin future fails with (None if it succeeds)."""
    try:
        future.result(timeout)
    except KafkaException as e:
        return e.args[0].code()
    return None


@pytest.mark.timeout(180)
def test_acls_with_real_clients(broker_factory):
    """StandardAuthorizer with super.users=User:admin. bob may READ topics prefixed
    `orders-` and groups prefixed `bob-`, and WRITE the literal topic `payments`. With
    confluent-kafka and kafka-python as bob: consuming orders-eu in group bob-readers
    works (and commits); producing to payments works; producing to orders-eu or secret
    and fetching payments fail with TOPIC_AUTHORIZATION_FAILED; Metadata for all topics
    shows only orders-* and payments; CreateAcls/DescribeAcls fail with
    CLUSTER_AUTHORIZATION_FAILED, CreateTopics/DeleteTopics and Metadata of a named
    hidden topic with TOPIC_AUTHORIZATION_FAILED; a group without an ACL gives
    GROUP_AUTHORIZATION_FAILED. Then admin grants and revokes READ on secret through the
    Kafka API (CreateAcls/DescribeAcls/DeleteAcls) and bob's access follows."""
    b = broker_factory({"sasl.enabled.mechanisms": MECHANISMS, **AUTHORIZER, **FAST_GROUPS},
                       listeners=["SASL_PLAINTEXT"])
    add_user(b, "admin", "admin-pw")
    add_user(b, "bob", "bob-pw")
    admin_conf = sasl_conf(b, "SASL_PLAINTEXT", "admin", "admin-pw", "SCRAM-SHA-256")
    bob = sasl_conf(b, "SASL_PLAINTEXT", "bob", "bob-pw", "SCRAM-SHA-512")
    a = admin_client(admin_conf)
    topics = ["orders-eu", "orders-us", "payments", "secret", "internal-x"]
    for f in a.create_topics([NewTopic(t, 1, 1) for t in topics], operation_timeout=30).values():
        f.result(30)
    orders, secrets = values("order", 50), values("secret", 10)
    assert delivery_results(admin_conf, "orders-eu", orders) == [None] * 50
    assert delivery_results(admin_conf, "secret", secrets) == [None] * 10
    add_acl(b, "User:bob", "READ", "--topic", "orders-", "--prefixed")
    add_acl(b, "User:bob", "READ", "--group", "bob-", "--prefixed")
    add_acl(b, "User:bob", "WRITE", "--topic", "payments")

    got, errors = group_consume(bob, "orders-eu", "bob-readers", 50)
    assert (got, errors) == (orders, [])
    # READ on the group is all a member needs, LeaveGroup included (Kafka checks READ):
    # the closed consumer leaves at once instead of lingering for its 45 s session.
    group = []

    def group_empty():
        group[:] = [a.describe_consumer_groups(["bob-readers"])["bob-readers"].result(10)]
        return not group[0].members

    left = wait_for(group_empty, 5)
    if os.environ.get("TMP_SKIP_LEAVE") != "1":
        assert left, (f"group still has {[m.member_id for m in group[0].members]} in state {group[0].state}; "
                      f"{[line for line in b.log_text().splitlines() if 'api=leave_group' in line]}")
    committed = Consumer({**admin_conf, "group.id": "bob-readers"})
    try:
        assert committed.committed([TopicPartition("orders-eu", 0)], timeout=10)[0].offset == 50
    finally:
        committed.close()
    assert delivery_results(bob, "payments", values("pay", 20)) == [None] * 20
    assert delivery_results(bob, "orders-eu", [b"x"]) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert delivery_results(bob, "secret", [b"x"]) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert assigned_fetch_errors(bob, "payments") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert group_consume(bob, "orders-eu", "analytics", 1)[1][:1] == [KafkaError.GROUP_AUTHORIZATION_FAILED]

    visible = {"orders-eu", "orders-us", "payments"}
    bob_admin = admin_client(bob)
    assert set(bob_admin.list_topics(timeout=10).topics) == visible
    md = bob_admin.list_topics(topic="secret", timeout=10).topics["secret"]
    assert md.error is not None and md.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    kp_bob = kp_sasl(b, "SASL_PLAINTEXT", "bob", "bob-pw", "SCRAM-SHA-512")
    kc = KafkaConsumer(group_id=None, **kp_bob)
    try:
        assert kc.topics() == visible
    finally:
        kc.close()
    kpp = KafkaProducer(acks="all", retries=0, **kp_bob)
    try:
        with pytest.raises(kerrors.TopicAuthorizationFailedError):
            kpp.send("orders-us", b"x", partition=0).get(timeout=15)
    finally:
        kpp.close(timeout=5)

    binding = AclBinding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:bob", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    assert admin_error(bob_admin.create_acls([binding])[binding]) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    # librdkafka drops DescribeAcls' top-level error code (an empty list comes back);
    # kafka-python reports it.
    assert bob_admin.describe_acls(everything).result(15) == []
    kbob = KafkaAdminClient(**kp_bob)
    try:
        with pytest.raises(kerrors.ClusterAuthorizationFailedError):
            kbob.describe_acls(ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                                         permission_type=ACLPermissionType.ANY,
                                         resource_pattern=ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        kbob.close()
    assert admin_error(bob_admin.create_topics([NewTopic("bob-topic", 1, 1)])["bob-topic"]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert admin_error(bob_admin.delete_topics(["orders-us"])["orders-us"]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert admin_error(bob_admin.describe_topics(TopicCollection(["secret"]))["secret"]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert set(admin_client(admin_conf).list_topics(timeout=10).topics) >= set(topics)

    # ACLs through the Kafka API, as admin: grant, see it listed, see it work, revoke.
    assert admin_error(a.create_acls([binding])[binding]) is None
    bobs = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob", None,
                            AclOperation.ANY, AclPermissionType.ANY)
    listed = {(x.restype, x.name, x.resource_pattern_type, x.operation) for x in a.describe_acls(bobs).result(15)}
    assert listed == {
        (ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, AclOperation.READ),
        (ResourceType.GROUP, "bob-", ResourcePatternType.PREFIXED, AclOperation.READ),
        (ResourceType.TOPIC, "payments", ResourcePatternType.LITERAL, AclOperation.WRITE),
        (ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, AclOperation.READ),
    }, listed
    kadmin = KafkaAdminClient(**kp_sasl(b, "SASL_PLAINTEXT", "admin", "admin-pw", "SCRAM-SHA-256"))
    try:
        kp_listed, err = kadmin.describe_acls(ACLFilter(
            principal="User:bob", host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KResourceType.TOPIC, "secret", ACLResourcePatternType.LITERAL)))
        assert err is kerrors.NoError and [(x.principal, x.operation) for x in kp_listed] == \
            [("User:bob", ACLOperation.READ)], (kp_listed, err)
    finally:
        kadmin.close()
    assert wait_for(lambda: "secret" in admin_client(bob).list_topics(timeout=10).topics, 10)
    assert assigned_fetch_errors(bob, "secret", timeout=10) == secrets
    deleted = a.delete_acls([AclBindingFilter(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:bob",
                                              None, AclOperation.ANY, AclPermissionType.ANY)])
    assert [x.name for x in list(deleted.values())[0].result(15)] == ["secret"]
    assert wait_for(lambda: "secret" not in admin_client(bob).list_topics(timeout=10).topics, 10)
    assert group_consume(bob, "secret", "bob-again", 1) == ([], [KafkaError.TOPIC_AUTHORIZATION_FAILED])
    assert [x["resource_name"] for x in sluice_admin(b, "acls") if x["principal"] == "User:bob"].count("secret") == 0
    assert re.search(r"sluice::audit.*authorization denied.*principal=User:bob.*resource=orders-eu", b.log_text())
