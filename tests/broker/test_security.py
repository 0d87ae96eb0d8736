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
