"""The Store against an etcd that demands a client certificate, and one with
user/password auth: the right credentials work, missing or wrong ones are a
StoreUnavailable (never a gRPC error or a hang)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hanode import config, embedded_etcd
from hanode.store import Store, StoreUnavailable

ROOT_PASSWORD = "root-" + uuid.uuid4().hex
HANODE_PASSWORD = "pw-" + uuid.uuid4().hex


@dataclass
class Issued:
    cert: Path
    key: Path


class CA:
    """A throwaway certificate authority writing PEM files into a directory."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.cert = (self._builder(subject, self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.file = directory / f"{name}.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(getattr(self, "name", subject)).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def issue(self, common_name: str, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
        if server:
            usage.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = (builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                .sign(self.key, hashes.SHA256()))
        out = Issued(self.dir / f"{common_name}.crt", self.dir / f"{common_name}.key")
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out.key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        out.key.chmod(0o600)
        return out


@dataclass
class SecureEtcd:
    url: str
    ca: CA
    client: Issued          # CN "hanode": also the etcd user name under auth
    stranger: Issued        # CN "nobody": a valid certificate, not an etcd user
    foreign: Issued         # issued by another CA
    admin: Issued           # CN "root"

    def etcdctl(self, *args: str, cert: Issued | None = None, user: str | None = None) -> str:
        cert = cert or self.admin
        cmd = ["etcdctl", "--endpoints", self.url, "--cacert", str(self.ca.file),
               "--cert", str(cert.cert), "--key", str(cert.key), "--dial-timeout", "3s"]
        if user:
            cmd += ["--user", user]
        result = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=20,
                                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        return result.stdout


def start_etcd(tmp: Path, auth: bool) -> tuple[SecureEtcd, object]:
    ca = CA(tmp, "test-ca")
    server = ca.issue("etcd-server", server=True)
    (tmp / "other").mkdir()
    etcd = SecureEtcd(
        url=f"https://127.0.0.1:{embedded_etcd.free_port()}", ca=ca,
        client=ca.issue("hanode", server=False), stranger=ca.issue("nobody", server=False),
        foreign=CA(tmp / "other", "other-ca").issue("hanode", server=False),
        admin=ca.issue("root", server=False))
    metrics_url = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    proc = embedded_etcd.start(
        tmp / "data", etcd.url, f"http://127.0.0.1:{embedded_etcd.free_port()}",
        log_path=tmp / "etcd.log", health_url=metrics_url,
        extra_args=["--client-cert-auth", "--trusted-ca-file", str(ca.file),
                    "--cert-file", str(server.cert), "--key-file", str(server.key),
                    "--listen-metrics-urls", metrics_url])
    if auth:
        try:
            etcd.etcdctl("user", "add", "root", "--new-user-password", ROOT_PASSWORD)
            etcd.etcdctl("role", "add", "hanode")
            etcd.etcdctl("role", "grant-permission", "hanode", "--prefix=true", "readwrite",
                         "/hanode/")
            etcd.etcdctl("user", "add", "hanode", "--new-user-password", HANODE_PASSWORD)
            etcd.etcdctl("user", "grant-role", "hanode", "hanode")
            etcd.etcdctl("auth", "enable")
        except BaseException:
            embedded_etcd.stop(proc)
            raise
    return etcd, proc


def _running_etcd(tmp_path_factory, *, auth: bool):
    etcd, proc = start_etcd(tmp_path_factory.mktemp("etcd-auth" if auth else "etcd-tls"),
                            auth=auth)
    try:
        yield etcd
    finally:
        embedded_etcd.stop(proc)


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory):
    yield from _running_etcd(tmp_path_factory, auth=False)


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory):
    yield from _running_etcd(tmp_path_factory, auth=True)


def make_store(etcd: SecureEtcd, cert: Issued | None, **auth) -> Store:
    toml = {"cluster": {"name": f"t{uuid.uuid4().hex[:8]}", "etcd": [etcd.url],
                        "ca_file": str(etcd.ca.file), **auth},
            "node": {"name": "n1"}}
    if cert is not None:
        toml["cluster"].update(cert_file=str(cert.cert), key_file=str(cert.key))
    return Store.from_config(config.parse(toml).cluster, timeout=2.0)


def exercise(store: Store) -> None:
    """The calls the agent makes: create-if-absent on a lease, read back, keepalive;
    and the workers' batched durable-record transaction (sent as raw bytes)."""
    store.apply([(store.durable_key(1), {"r": 1}), (store.durable_key(2), {"r": 2})])
    store.apply([], [store.durable_key(1)])
    assert [e.value for e in store.get_prefix(store.key("durable") + "/")] == [{"r": 2}]
    store.delete_prefix(store.key("durable") + "/")
    lease = store.grant_lease(5)
    created, term = store.create(store.leader_key, {"node": "n1"}, lease=lease)
    assert created and term > 0
    assert store.get(store.leader_key).value == {"node": "n1"}
    assert store.keepalive(lease) > 0
    store.revoke_lease(lease)
    assert store.get(store.leader_key) is None


def test_client_certificate_gets_in(tls_etcd):
    store = make_store(tls_etcd, tls_etcd.client)
    try:
        exercise(store)
        assert store.endpoint_health() == {tls_etcd.url: True}
    finally:
        store.close()


@pytest.mark.parametrize("who", ["no certificate", "certificate of another CA"])
def test_without_a_trusted_certificate_the_store_is_unavailable(tls_etcd, who):
    cert = None if who == "no certificate" else tls_etcd.foreign
    store = make_store(tls_etcd, cert)
    try:
        with pytest.raises(StoreUnavailable):
            store.put(store.key("x"), 1)
        assert store.endpoint_health() == {tls_etcd.url: False}
    finally:
        store.close()


def test_plain_http_to_a_tls_etcd_is_unavailable(tls_etcd):
    store = Store([tls_etcd.url.replace("https://", "http://")], "plain", timeout=1.0)
    try:
        with pytest.raises(StoreUnavailable):
            store.get(store.key("x"))
    finally:
        store.close()


def test_certificate_and_password_get_in(auth_etcd):
    store = make_store(auth_etcd, auth_etcd.client, user="hanode", password=HANODE_PASSWORD)
    try:
        exercise(store)
    finally:
        store.close()


@pytest.mark.parametrize("cert_name, auth", [
    ("client", {"user": "hanode", "password": "wrong"}),
    ("stranger", {}),                       # CN is not an etcd user
    (None, {"user": "hanode", "password": HANODE_PASSWORD}),  # right password, no cert
])
def test_auth_refuses_wrong_credentials(auth_etcd, cert_name, auth):
    cert = getattr(auth_etcd, cert_name) if cert_name else None
    store = make_store(auth_etcd, cert, **auth)
    try:
        with pytest.raises(StoreUnavailable):
            store.put(store.key("x"), 1)
    finally:
        store.close()


def test_auth_confines_the_user_to_hanode_keys(auth_etcd):
    """The role the deployment grants covers /hanode/ and nothing else."""
    store = make_store(auth_etcd, auth_etcd.client, user="hanode", password=HANODE_PASSWORD)
    try:
        store.put(store.key("ok"), 1)
        with pytest.raises(StoreUnavailable):
            store._call("put", "/elsewhere", "1")
        with pytest.raises(StoreUnavailable):
            store.apply([("/elsewhere", 1)])
        assert "/elsewhere" not in auth_etcd.etcdctl(
            "get", "--prefix", "/", "--keys-only", user=f"root:{ROOT_PASSWORD}")
    finally:
        store.close()
