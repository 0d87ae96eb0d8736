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


def sluice_admin(b, *args):
    """`sluice-broker admin` against the broker's internal listener; returns the JSON."""
    out = subprocess.run(
        [str(BINARY), "admin", "--server", f"{b.host}:{b.internal_port}", *args],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


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
    """sluice_authentication_{successes,failures}_total for one mechanism (0 if none yet)."""
    return metric(b.metrics(), f"sluice_authentication_{family}_total", default=0.0, reason=mechanism)


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


def assigned_fetch_errors(conf, topic, n=1, timeout=15):
    """Assigns partition 0 of `topic` at offset 0 and returns the first error event's
    code, or the values read once `n` have come (or `timeout` passed) without one."""
    c = Consumer({**conf, "group.id": "bob-assign", "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n and time.monotonic() < deadline:
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
        anything = ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY)
        with pytest.raises(kerrors.ClusterAuthorizationFailedError):
            kbob.describe_acls(ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                                         permission_type=ACLPermissionType.ANY, resource_pattern=anything))
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
    assert assigned_fetch_errors(bob, "secret", n=10) == secrets
    deleted = a.delete_acls([AclBindingFilter(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:bob",
                                              None, AclOperation.ANY, AclPermissionType.ANY)])
    assert [x.name for x in list(deleted.values())[0].result(15)] == ["secret"]
    assert wait_for(lambda: "secret" not in admin_client(bob).list_topics(timeout=10).topics, 10)
    assert group_consume(bob, "secret", "bob-again", 1) == ([], [KafkaError.TOPIC_AUTHORIZATION_FAILED])
    assert [x["resource_name"] for x in sluice_admin(b, "acls") if x["principal"] == "User:bob"].count("secret") == 0
    assert re.search(r"sluice::audit.*authorization denied.*principal=User:bob.*resource=orders-eu", b.log_text())


@pytest.mark.timeout(60)
def test_group_member_with_read_acl_leaves_at_once(broker_factory):
    """Kafka authorizes LeaveGroup with READ on the group, like JoinGroup, SyncGroup and
    Heartbeat: a consumer that may READ its group (and topic), and nothing more, leaves
    it when closed, so the group is empty at once instead of keeping the member until
    its session times out (45 s for librdkafka) and stalling the next rebalance."""
    b = broker_factory({"sasl.enabled.mechanisms": MECHANISMS, **AUTHORIZER, **FAST_GROUPS},
                       listeners=["SASL_PLAINTEXT"])
    add_user(b, "admin", "admin-pw")
    add_user(b, "bob", "bob-pw")
    admin_conf = sasl_conf(b, "SASL_PLAINTEXT", "admin", "admin-pw", "SCRAM-SHA-256")
    a = admin_client(admin_conf)
    a.create_topics([NewTopic("orders-eu", 1, 1)], operation_timeout=30)["orders-eu"].result(30)
    assert delivery_results(admin_conf, "orders-eu", values("order", 5)) == [None] * 5
    add_acl(b, "User:bob", "READ", "--topic", "orders-eu")
    add_acl(b, "User:bob", "READ", "--group", "bob-readers")
    bob = sasl_conf(b, "SASL_PLAINTEXT", "bob", "bob-pw", "SCRAM-SHA-512")
    got, errors = group_consume(bob, "orders-eu", "bob-readers", 5)
    assert (len(got), errors) == (5, [])
    group = []

    def group_empty():
        group[:] = [a.describe_consumer_groups(["bob-readers"])["bob-readers"].result(10)]
        return not group[0].members

    assert wait_for(group_empty, 5), (
        f"group still has {[m.member_id for m in group[0].members]} in state {group[0].state}; "
        f"{[line for line in b.log_text().splitlines() if 'api=leave_group' in line]}")


# ----------------------------------------------------------------------------- 6. quotas

KIB = 1024
VALUE = b"q" * (4 * KIB)


def produce_flat_out(conf, topic, seconds):
    """Produces 4 KiB records with confluent-kafka (acks=1, 16 KiB batches: small steps
    against the quota) as fast as the client and broker allow for `seconds`. Returns
    (start, [(ack time, value bytes)], throttle times the broker reported in s). What
    is still queued at the end is dropped."""
    acked, throttles = [], []
    p = Producer({**conf, "acks": 1, "linger.ms": 5, "batch.size": 16 * KIB, "enable.idempotence": False,
                  "queue.buffering.max.kbytes": 2048,
                  "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})

    def cb(err, msg):
        if err is None:
            acked.append((time.monotonic(), len(msg.value())))

    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            try:
                p.produce(topic, value=VALUE, partition=0, on_delivery=cb)
            except BufferError:
                p.poll(0.01)
            p.poll(0)
    finally:
        close_producer(p)
    return start, acked, throttles


def consume_flat_out(conf, topic, seconds):
    """Reads `topic` from the start with confluent-kafka, 16 KiB per fetch, for `seconds`.
    Returns (start, [(time, bytes received from the broker so far)], values received,
    throttle times reported). The bytes are librdkafka's `rxbytes` statistic, whole
    responses: what the broker meters. The values alone would undercount, since a fetch
    is filled up to its limit with the start of a batch the client drops."""
    samples, throttles, sizes = [], [], []

    def on_stats(text):
        brokers = [x for x in json.loads(text)["brokers"].values() if x["nodeid"] >= 0]
        samples.append((time.monotonic(), sum(x["rxbytes"] for x in brokers)))

    c = Consumer({**conf, "group.id": "quota-reader", "enable.auto.commit": False, "auto.offset.reset": "error",
                  "fetch.max.bytes": 16 * KIB, "max.partition.fetch.bytes": 16 * KIB, "message.max.bytes": 16 * KIB,
                  "statistics.interval.ms": 250, "stats_cb": on_stats,
                  "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            for m in c.consume(num_messages=100, timeout=0.1):
                assert m.error() is None, m.error()
                sizes.append(len(m.value()))
    finally:
        c.close()
    return start, samples, sum(sizes), throttles


def counter_rate(start, samples, since, until):
    """Bytes per second between the first counter sample at least `since` s after
    `start` and the last one before `until` s."""
    window = [(t, v) for t, v in samples if since <= t - start <= until]
    assert len(window) >= 2, f"too few statistics samples: {samples}"
    (t0, v0), (t1, v1) = window[0], window[-1]
    return (v1 - v0) / (t1 - t0)


def rate(start, events, since, until):
    """Bytes per second of the events between `since` and `until` s after `start`."""
    total = sum(n for t, n in events if since <= t - start < until)
    return total / (until - since)


def per_second(start, events, seconds):
    return [round(rate(start, events, s, s + 1) / KIB) for s in range(int(seconds))]


@pytest.mark.timeout(120)
def test_producer_and_consumer_byte_rate_quotas(broker_factory):
    """`quota-set --user slow producer_byte_rate=512KiB consumer_byte_rate=256KiB`: a
    confluent-kafka producer authenticated as `slow` (SASL) that sends 4 KiB records as
    fast as it can for 10 s gets acknowledged within 20% of 512 KiB/s, measured from
    2 s on; the broker reports throttle_time_ms and counts the throttling in its
    metrics. The same producer as `fast`, who has no quota, is several times faster and
    never throttled. Reading back as `slow` (16 KiB fetches) the bytes received run
    within 20% of 256 KiB/s from 2 s on.

    The windows are quota.window.num=2 of 1 s. Kafka's rate starts with an allowance of
    (windows - 1) windows: with the default 11 the first second would carry ten seconds'
    worth of quota and a 10 s run would measure that burst, not the enforced rate. With
    two, the first second carries two seconds' worth and the second pays it back, hence
    measuring from 2 s."""
    b = broker_factory({"sasl.enabled.mechanisms": MECHANISMS, "quota.window.num": "2"},
                       listeners=["SASL_PLAINTEXT"])
    add_user(b, "slow", "slow-pw", "SCRAM-SHA-256")
    add_user(b, "fast", "fast-pw", "SCRAM-SHA-256")
    producer_quota, consumer_quota = 512 * KIB, 256 * KIB
    sluice_admin(b, "quota-set", "--user", "slow", f"producer_byte_rate={producer_quota}",
                 f"consumer_byte_rate={consumer_quota}")
    quotas = sluice_admin(b, "quotas")
    assert [(q["user"], q["values"]) for q in quotas] == [
        ("slow", {"producer_byte_rate": producer_quota, "consumer_byte_rate": consumer_quota})], quotas
    create_topic(b, "slow-topic")
    create_topic(b, "fast-topic")
    slow = sasl_conf(b, "SASL_PLAINTEXT", "slow", "slow-pw", "SCRAM-SHA-256")
    fast = sasl_conf(b, "SASL_PLAINTEXT", "fast", "fast-pw", "SCRAM-SHA-256")

    start, acked, throttles = produce_flat_out(slow, "slow-topic", 10)
    measured = rate(start, acked, 2, 10)
    assert abs(measured / producer_quota - 1) <= 0.2, (
        f"{measured / KIB:.0f} KiB/s acknowledged, quota {producer_quota // KIB} KiB/s; "
        f"KiB per second: {per_second(start, acked, 10)}")
    assert throttles and max(throttles) > 0, throttles
    assert (metric(b.metrics(), "sluice_quota_throttle_seconds_total", reason="produce") or 0) > 0

    start, fast_acked, fast_throttles = produce_flat_out(fast, "fast-topic", 3)
    fast_rate = rate(start, fast_acked, 1, 3)
    assert fast_rate > 3 * producer_quota, (f"unthrottled user: {fast_rate / KIB:.0f} KiB/s; "
                                            f"{per_second(start, fast_acked, 3)}")
    assert not [t for t in fast_throttles if t > 0], fast_throttles

    stored = sum(n for _, n in acked)
    start, samples, read, read_throttles = consume_flat_out(slow, "slow-topic", 8)
    assert read < stored, "read everything: the topic is too small to measure the rate"
    measured = counter_rate(start, samples, 2, 8)
    assert abs(measured / consumer_quota - 1) <= 0.2, (
        f"{measured / KIB:.0f} KiB/s fetched, quota {consumer_quota // KIB} KiB/s; "
        f"received bytes over time: {[(round(t - start, 2), v) for t, v in samples]}")
    assert read_throttles and max(read_throttles) > 0, read_throttles


# ----------------------------------------------------------------------------- 7. certificate rotation


def served_certificate(port, ca):
    """The DER certificate the broker presents to a new TLS connection (verified
    against `ca`, with the name 127.0.0.1)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def replace_file(path: Path, data: bytes):
    """Writes a file the way a Secret volume update does: a new file renamed over the old."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def api_versions_over(tls):
    """Sends ApiVersions v0 on an open TLS socket; returns the error code of the answer."""
    tls.sendall(rawkafka.api_versions_request(0, 7))
    cid, r = rawkafka.recv_response(tls)
    assert cid == 7
    return r.int16()


@pytest.mark.timeout(120)
def test_certificate_rotation_without_restart(broker_factory, tmp_path):
    """An SSL listener reads its certificate and key from two files (like a Kubernetes
    Secret's tls.crt / tls.key). Replacing both with certificate B (same CA, other CN,
    serial and expiry) makes new connections get B within 15 s, with no restart (same
    PID); a TLS connection opened before keeps working, and so does a confluent-kafka
    producer created before; the expiry metric follows B. A broken certificate file is
    refused: the broker logs `cannot reload TLS certificate files` and keeps serving B,
    and a valid file later is picked up again."""
    ca = CA(tmp_path / "pki")
    now = _now()
    cert_a = ca.issue("a", "broker-a", server=True, valid_to=now + datetime.timedelta(days=7))
    cert_b = ca.issue("b", "broker-b", server=True, valid_to=now + datetime.timedelta(days=9))
    assert cert_a.cert.serial_number != cert_b.cert.serial_number
    secret = tmp_path / "secret"
    secret.mkdir()
    crt, key = secret / "tls.crt", secret / "tls.key"
    crt.write_bytes(cert_a.crt_pem)
    key.write_bytes(cert_a.key_pem)
    b = broker_factory({"ssl.certificate.location": str(crt), "ssl.key.location": str(key)}, listeners=["SSL"])
    create_topic(b, "rotation")
    port, pid = b.ports["SSL"], b.proc.pid

    def expiry():
        return metric(b.metrics(), "sluice_tls_certificate_expiry_timestamp_seconds", listener="SSL")

    assert served_certificate(port, ca.path) == cert_a.der
    assert expiry() == int(cert_a.cert.not_valid_after_utc.timestamp())
    conf = ssl_conf(b, "SSL", ca.path)
    before = Producer({**conf, "acks": "all", "linger.ms": 5})
    ctx = ssl.create_default_context(cafile=str(ca.path))
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")
    try:
        errors = []

        def produce_some(p, tag):
            for i in range(10):
                p.produce("rotation", value=f"{tag}-{i}".encode(), partition=0,
                          on_delivery=lambda err, msg: err is not None and errors.append(err))
            assert p.flush(15) == 0 and not errors, errors

        produce_some(before, "before")
        assert api_versions_over(held) == 0

        offset = log_size(b)
        replace_file(key, cert_b.key_pem)
        replace_file(crt, cert_b.crt_pem)
        assert wait_for(lambda: served_certificate(port, ca.path) == cert_b.der, 15, interval=0.25), \
            "the broker still serves certificate A"
        assert "TLS certificate files changed" in log_since(b, offset)
        assert b.alive() and b.proc.pid == pid
        assert expiry() == int(cert_b.cert.not_valid_after_utc.timestamp())
        # Connections made before the rotation keep going.
        assert held.getpeercert(binary_form=True) == cert_a.der and api_versions_over(held) == 0
        produce_some(before, "after")
        assert delivery_results(conf, "rotation", [b"new-client"]) == [None]

        # A broken file is refused; the broker keeps serving B and says why.
        offset = log_size(b)
        replace_file(crt, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        assert wait_for(lambda: "cannot reload TLS certificate files" in log_since(b, offset), 15), b.log_tail()
        assert served_certificate(port, ca.path) == cert_b.der
        assert delivery_results(conf, "rotation", [b"while-broken"]) == [None]
        assert b.alive() and b.proc.pid == pid
        # Fixed (here: back to A), it is picked up again.
        replace_file(key, cert_a.key_pem)
        replace_file(crt, cert_a.crt_pem)
        assert wait_for(lambda: served_certificate(port, ca.path) == cert_a.der, 15, interval=0.25)
    finally:
        held.close()
        close_producer(before)
    assert watermarks(b, "rotation", 0) == (0, 22)


# ----------------------------------------------------------------------------- 8. SCRAM credentials via the Kafka API


def login(conf, timeout=10):
    """Whether a confluent-kafka client with these settings gets a Metadata answer
    (True) or an authentication error (False) within `timeout`."""
    errors = []
    p = Producer({**conf, "error_cb": errors.append, "reconnect.backoff.ms": 5000})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p.list_topics(timeout=1)
                return True
            except KafkaException:
                p.poll(0)  # serves error_cb
                if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
                    return False
        raise AssertionError(f"neither Metadata nor an authentication error within {timeout}s: {errors}")
    finally:
        close_producer(p)


def scram_infos(a, user):
    """{mechanism name: iterations} of a user, from DescribeUserScramCredentials."""
    d = a.describe_user_scram_credentials([user])[user].result(15)
    return {i.mechanism.name: i.iterations for i in d.scram_credential_infos}


@pytest.mark.timeout(120)
def test_scram_credentials_through_the_kafka_api(broker_factory):
    """As the super user, AlterUserScramCredentials (confluent-kafka AdminClient) creates
    `carol` with SCRAM-SHA-256 (8192 iterations) and SCRAM-SHA-512 (4096); carol can
    log in with either mechanism and with PLAIN; DescribeUserScramCredentials and the
    admin CLI list both mechanisms with their iterations and never the password. carol
    herself may neither describe nor alter credentials (CLUSTER_AUTHORIZATION_FAILED).
    Deleting the SCRAM-SHA-256 credential stops that mechanism only; deleting the last
    one stops every login, and describing carol then gives RESOURCE_NOT_FOUND."""
    b = broker_factory({"sasl.enabled.mechanisms": MECHANISMS, **AUTHORIZER}, listeners=["SASL_PLAINTEXT"])
    add_user(b, "admin", "admin-pw", "SCRAM-SHA-512")
    a = admin_client(sasl_conf(b, "SASL_PLAINTEXT", "admin", "admin-pw", "SCRAM-SHA-512"))

    def carol(mechanism, password="carol-pw"):
        return sasl_conf(b, "SASL_PLAINTEXT", "carol", password, mechanism)

    assert not login(carol("SCRAM-SHA-256"))
    fs = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"carol-pw"),
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"carol-pw"),
    ])
    assert fs["carol"].result(15) is None
    assert scram_infos(a, "carol") == {"SCRAM_SHA_256": 8192, "SCRAM_SHA_512": 4096}
    everyone = a.describe_user_scram_credentials().result(15)
    assert set(everyone) == {"admin", "carol"}, everyone
    kadmin = KafkaAdminClient(**kp_sasl(b, "SASL_PLAINTEXT", "admin", "admin-pw", "SCRAM-SHA-512"))
    try:
        described = kadmin.describe_user_scram_credentials(["carol"])["carol"]
    finally:
        kadmin.close()
    assert described["error"] is None and sorted((c["mechanism"].name, c["iterations"])
                                                 for c in described["credential_infos"]) == [
        ("SCRAM_SHA_256", 8192), ("SCRAM_SHA_512", 4096)], described
    listed = {u["name"]: u["credentials"] for u in sluice_admin(b, "users")}
    assert sorted((c["mechanism"], c["iterations"]) for c in listed["carol"]) == [
        ("SCRAM-SHA-256", 8192), ("SCRAM-SHA-512", 4096)], listed
    assert "carol-pw" not in json.dumps(listed)
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        assert login(carol(mechanism)), mechanism
    assert not login(carol("SCRAM-SHA-512", "not-carol-pw"))

    as_carol = admin_client(carol("SCRAM-SHA-512"))
    f = as_carol.alter_user_scram_credentials([
        UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"x")])["dave"]
    assert admin_error(f) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # Asked with kafka-python: librdkafka 2.16 aborts the process (free(): invalid size)
    # on any DescribeUserScramCredentials response with a top-level error, which Kafka
    # sends for this refusal too (it frees an error string it put on the stack).
    kcarol = KafkaAdminClient(**kp_sasl(b, "SASL_PLAINTEXT", "carol", "carol-pw", "SCRAM-SHA-512"))
    try:
        with pytest.raises(kerrors.ClusterAuthorizationFailedError):
            kcarol.describe_user_scram_credentials(["carol"])
    finally:
        kcarol.close()
    assert "dave" not in {u["name"] for u in sluice_admin(b, "users")}

    deleted = a.alter_user_scram_credentials([UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256)])
    assert deleted["carol"].result(15) is None
    assert scram_infos(a, "carol") == {"SCRAM_SHA_512": 4096}
    assert not login(carol("SCRAM-SHA-256"))
    assert login(carol("SCRAM-SHA-512"))
    deleted = a.alter_user_scram_credentials([UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)])
    assert deleted["carol"].result(15) is None
    assert admin_error(a.describe_user_scram_credentials(["carol"])["carol"]) == KafkaError.RESOURCE_NOT_FOUND
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        assert not login(carol(mechanism)), mechanism
    assert "carol" not in {u["name"] for u in sluice_admin(b, "users")}


# ----------------------------------------------------------------------------- 9. re-authentication


EXPIRED = "SASL session expired"


def raw_plain_login(port, user, password):
    """A raw connection authenticated with SaslHandshake v1 + SaslAuthenticate v1 (PLAIN).
    Returns (socket, session_lifetime_ms the broker granted)."""
    s = rawkafka.connect(port)
    s.sendall(rawkafka.request(SASL_HANDSHAKE, 1, 1, rawkafka.Writer().string("PLAIN").build()))
    cid, r = rawkafka.recv_response(s)
    assert cid == 1 and r.int16() == 0
    token = b"\0" + user.encode() + b"\0" + password.encode()
    s.sendall(rawkafka.request(SASL_AUTHENTICATE, 1, 2, rawkafka.Writer().bytes_(token).build()))
    cid, r = rawkafka.recv_response(s)
    error, message = r.int16(), r.string()
    r._take(max(0, r.int32()))  # auth_bytes: empty for PLAIN
    lifetime = r.int64()
    assert cid == 2 and error == 0, message
    return s, lifetime


def raw_metadata_answered(s, correlation_id):
    """Sends Metadata v0 (no topics) and reads the answer's correlation id; False if the
    broker closed the connection instead."""
    try:
        s.sendall(rawkafka.request(rawkafka.METADATA, 0, correlation_id, rawkafka.Writer().int32(0).build()))
        return rawkafka.recv_response(s)[0] == correlation_id
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return False


@pytest.mark.timeout(120)
def test_reauthentication_keeps_clients_going(broker_factory, tmp_path):
    """connections.max.reauth.ms=3000 (KIP-368): SaslAuthenticate grants a 3 s session
    and a raw client that does not re-authenticate is disconnected at its next request
    after that. confluent-kafka (SCRAM-SHA-512) and kafka-python (SCRAM-SHA-256), both
    over SASL_SSL, produce a record every 50 ms for 8 s: every record is acknowledged
    and stored exactly once, no client reports an error, each client's mechanism shows at
    least two more successful authentications (re-authentications on the live
    connections), and no connection but the raw one is closed for an expired session."""
    ca = CA(tmp_path / "pki")
    server = ca.issue("server", "broker", server=True)
    b = broker_factory({"ssl.keystore.location": str(server.keystore), "sasl.enabled.mechanisms": MECHANISMS,
                        "connections.max.reauth.ms": "3000"}, listeners=["SASL_SSL", "SASL_PLAINTEXT"])
    add_user(b, "alice", "alice-pw")
    create_topic(b, "reauth")

    authenticated = time.monotonic()
    raw, lifetime = raw_plain_login(b.ports["SASL_PLAINTEXT"], "alice", "alice-pw")
    try:
        assert lifetime == 3000
        # Metadata every 200 ms: answered while the session lasts, refused once it is over.
        closed_after = None
        for cid in range(3, 40):
            if not raw_metadata_answered(raw, cid):
                closed_after = time.monotonic() - authenticated
                break
            time.sleep(0.2)
        # Not before the lifetime; the upper bound only allows for a slow machine.
        assert closed_after is not None and 2.9 <= closed_after <= 6.0, closed_after
    finally:
        raw.close()
    assert wait_for(lambda: b.log_text().count(EXPIRED) == 1, 5), b.log_tail()

    errors, delivered = [], []
    cp = Producer({**sasl_conf(b, "SASL_SSL", "alice", "alice-pw", "SCRAM-SHA-512", ca=ca.path),
                   "acks": "all", "linger.ms": 0, "error_cb": errors.append})
    kp = KafkaProducer(acks="all", linger_ms=0, **kp_sasl(b, "SASL_SSL", "alice", "alice-pw", "SCRAM-SHA-256",
                                                           ca=ca.path))
    futures = []
    try:
        # Both connected and authenticated before counting.
        cp.produce("reauth", value=b"warm-up-confluent", partition=0,
                   on_delivery=lambda err, msg: delivered.append(err))
        assert cp.flush(15) == 0 and delivered == [None], delivered
        kp.send("reauth", value=b"warm-up-kafka-python", partition=0).get(timeout=15)
        before = {m: auth_metric(b, "successes", m) for m in ("SCRAM-SHA-512", "SCRAM-SHA-256")}
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 8:
            cp.produce("reauth", value=b"c-%d" % i, partition=0, on_delivery=lambda err, msg: delivered.append(err))
            futures.append(kp.send("reauth", value=b"k-%d" % i, partition=0))
            cp.poll(0.05)
            i += 1
        assert cp.flush(15) == 0
        offsets = sorted(f.get(timeout=15).offset for f in futures)
    finally:
        close_producer(cp)
        kp.close(timeout=10)
    assert delivered == [None] * (i + 1), [e for e in delivered if e is not None][:5]
    assert not errors, errors
    assert len(set(offsets)) == i, offsets[:10]
    assert watermarks(b, "reauth", 0) == (0, 2 * i + 2)
    after = {m: auth_metric(b, "successes", m) for m in ("SCRAM-SHA-512", "SCRAM-SHA-256")}
    assert all(after[m] - before[m] >= 2 for m in after), (before, after)
    assert b.log_text().count(EXPIRED) == 1, [line for line in b.log_text().splitlines() if EXPIRED in line]
