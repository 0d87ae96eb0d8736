"""A three-broker cluster secured end to end: clients and followers on a mutual-TLS
listener (brokers present their certificate, whose subject is a super user, to fetch as
followers with CLUSTER_ACTION), the metadata quorum and admin API on mutual-TLS gRPC,
and ACLs for the application's principal. Replication, failover and the admin CLI must
all work through it, and nothing without a trusted certificate gets in.
"""

import datetime
import ipaddress
import subprocess
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import BINARY
from test_security import CA, Issued, _name, _now

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def broker_certificate(ca: CA, hosts) -> Issued:
    """One certificate for every broker (CN=broker): server and client use, the brokers'
    addresses as SANs (followers and quorum peers check the name they connect to)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("broker"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(ca.dir, "broker", cert, key, ca.cert)


def ssl_conf(c, ca: CA, who: Issued, **extra):
    return {
        "bootstrap.servers": c.bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca.path),
        "ssl.certificate.location": str(who.crt),
        "ssl.key.location": str(who.keyfile),
        **extra,
    }


def admin_cli(c, ca: CA, who: Issued, *args, broker=0, check=True):
    b = c.brokers[broker]
    out = subprocess.run(
        [str(BINARY), "admin", "--server", f"{b.host}:{c.internal[broker]}",
         "--tls-ca", str(ca.path), "--tls-cert", str(who.crt), "--tls-key", str(who.keyfile), *args],
        capture_output=True, text=True, timeout=60,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def partitions(admin: AdminClient, topic: str):
    md = admin.list_topics(topic=topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    return {p: (m.leader, sorted(m.isrs)) for p, m in t.partitions.items()}


def wait_for(cond, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def produce(conf, topic, values, timeout=30):
    p = Producer({**conf, "acks": "all", "enable.idempotence": True})
    failed = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, _m: failed.append(err) if err else None)
        p.poll(0)
    assert p.flush(timeout) == 0, "messages still undelivered"
    assert failed == [], failed


def consume(conf, group, n, timeout=60):
    """`n` records of `payments` through the consumer group, committing as it goes."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe(["payments"])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append(m.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def test_cluster_with_mutual_tls_everywhere_and_acls(cluster_factory, tmp_path):
    ca = CA(tmp_path / "certs")
    hosts = [f"127.0.0.{i}" for i in range(2, 7)]
    broker = broker_certificate(ca, hosts)
    admin_cert = ca.issue("admin", "admin")
    alice = ca.issue("alice", "alice")
    outsider = CA(tmp_path / "other", name="other-ca").issue("mallory", "mallory")
    c = cluster_factory(3, overrides={
        # The listener keeps its name (the fixtures use it) but speaks TLS.
        "listener.security.protocol.map": "PLAINTEXT:SSL",
        "ssl.keystore.location": str(broker.keystore),
        "ssl.truststore.location": str(ca.path),
        "ssl.client.auth": "required",
        "internal.listener.security.protocol": "SSL",
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{broker.dn};User:{admin_cert.dn}",
        "min.insync.replicas": "2",
    })
    assert broker.dn == "CN=broker,O=Sluice"

    # The admin API only answers with a trusted client certificate.
    status = admin_cli(c, ca, admin_cert, "status")
    assert '"voters":[0,1,2]' in status.stdout.replace(" ", ""), status.stdout
    plain = subprocess.run([str(BINARY), "admin", "--server", f"{c.brokers[0].host}:{c.internal[0]}", "status"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0

    admin = AdminClient(ssl_conf(c, ca, admin_cert))
    admin.create_topics([NewTopic("payments", 3, 3)])["payments"].result(30)
    # Every follower fetches over TLS as CN=broker (a super user, so CLUSTER_ACTION):
    # the whole ISR is back only if that works.
    wait_for(lambda: all(isr == [0, 1, 2] for _, isr in partitions(admin, "payments").values()),
             "a full ISR on every partition")

    dn = alice.dn
    admin_cli(c, ca, admin_cert, "acl-add", "--principal", f"User:{dn}", "--operation", "WRITE",
              "--topic", "payments")
    admin_cli(c, ca, admin_cert, "acl-add", "--principal", f"User:{dn}", "--operation", "READ",
              "--topic", "payments")
    admin_cli(c, ca, admin_cert, "acl-add", "--principal", f"User:{dn}", "--operation", "READ",
              "--group", "billing")

    alice_conf = ssl_conf(c, ca, alice)
    first = [f"pay-{i}".encode() for i in range(300)]
    produce(alice_conf, "payments", first)
    # The group (and __consumer_offsets, replicated like any topic) starts with all three.
    assert sorted(consume(alice_conf, "billing", len(first))) == sorted(first)

    # Fail the leader of partition 0: a follower that replicated over TLS takes over.
    leader = partitions(admin, "payments")[0][0]
    c.brokers[leader].kill()
    survivors = ",".join(c.brokers[i].bootstrap for i in range(3) if i != leader)
    admin = AdminClient(ssl_conf(c, ca, admin_cert, **{"bootstrap.servers": survivors}))
    wait_for(lambda: all(l != leader for l, _ in partitions(admin, "payments").values()),
             "new leaders on the surviving brokers")
    alice_conf["bootstrap.servers"] = survivors
    second = [f"pay-late-{i}".encode() for i in range(100)]
    produce(alice_conf, "payments", second)
    # The group goes on from its committed offsets: exactly the new records.
    assert sorted(consume(alice_conf, "billing", len(second))) == sorted(second)

    # alice may do only what her ACLs say.
    alice_admin = AdminClient(alice_conf)
    try:
        alice_admin.create_topics([NewTopic("alice-own", 1, 2)])["alice-own"].result(30)
        raise AssertionError("alice created a topic without CREATE")
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_AUTHORIZATION_FAILED", e

    # A certificate from another CA gets no TLS session at all.
    p = Producer(ssl_conf(c, ca, outsider, **{"bootstrap.servers": survivors, "message.timeout.ms": 5000}))
    errors = []
    p.produce("payments", b"intruder", on_delivery=lambda err, _m: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
