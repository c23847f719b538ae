"""TLS, mutual TLS and bearer tokens, end to end; secrets never reach the logs.

Certificates are generated at test time (``cryptography``): a CA, a server certificate for
127.0.0.1 / localhost / oracle.test, a client certificate, and a second, untrusted CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from client_sdk import OracleClient
from client_sdk.errors import OracleClientError, Unauthenticated, Unavailable
from client_sdk.spaces import get_space
from oracle_server.app import App
from tests.e2e.conftest import make_settings, serve_args
from tests.helpers import PG_URL, postgres_available, server_process, unique_name

SPACE = get_space("nasbench201")
TOKEN = "s3cr3t-T0ken-for-tests"


# ------------------------------------------------------------------ certificates
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, cn: str, issuer_key, issuer_name: x509.Name | None, *,
          ca: bool = False, sans: list | None = None, client: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name or _name(cn))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = _key(), _key()
    ca = _cert(ca_key, "oracle-test-ca", ca_key, None, ca=True)
    rogue = _cert(rogue_key, "rogue-ca", rogue_key, None, ca=True)
    sk, ck, rk = _key(), _key(), _key()
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            x509.DNSName("oracle.test")]
    server = _cert(sk, "oracle.test", ca_key, ca.subject, sans=sans)
    client = _cert(ck, "nas-client", ca_key, ca.subject, client=True)
    rogue_client = _cert(rk, "nas-client", rogue_key, rogue.subject, client=True)
    files = {
        "ca": _pem_cert(ca), "server_cert": _pem_cert(server), "server_key": _pem_key(sk),
        "client_cert": _pem_cert(client), "client_key": _pem_key(ck), "rogue_ca": _pem_cert(rogue),
        "rogue_client_cert": _pem_cert(rogue_client), "rogue_client_key": _pem_key(rk),
    }
    paths = {}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
        paths[name] = d / f"{name}.pem"
    return Pki(dir=d, **paths)


def _start(nb201_model, tmp_path, **overrides) -> App:
    return App(make_settings(tmp_path, **overrides), models={"nasbench201": nb201_model}).start(
        block_until_ready=True, timeout_s=60)


@pytest.fixture(scope="module")
def tls_server(nb201_model, pki: Pki, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("tls"), tls_cert=str(pki.server_cert),
                 tls_key=str(pki.server_key))
    yield app
    app.stop(0.5)


@pytest.fixture(scope="module")
def mtls_server(nb201_model, pki: Pki, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("mtls"), tls_cert=str(pki.server_cert),
                 tls_key=str(pki.server_key), tls_client_ca=str(pki.ca), write_token=TOKEN)
    yield app
    app.stop(0.5)


def _client(port: int, host: str = "127.0.0.1", **kw) -> OracleClient:
    return OracleClient(f"{host}:{port}", timeout_s=10, retries=False, **kw)


def _measurements(n: int = 10, seed: int = 0):
    genes = SPACE.sample(n, rng=seed)
    return genes, SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]


# --------------------------------------------------------------------------- TLS
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_with_the_ca_works(tls_server: App, pki: Pki, host: str) -> None:
    with _client(tls_server.port, host, root_certificates=pki.ca) as c:
        assert c.health() == "SERVING"
        assert [s.name for s in c.list_spaces()] == ["nasbench201"]


def test_tls_server_name_override(tls_server: App, pki: Pki) -> None:
    with _client(tls_server.port, root_certificates=pki.ca.read_bytes(),
                 tls_server_name="oracle.test") as c:
        assert c.health() == "SERVING"
    with _client(tls_server.port, root_certificates=pki.ca,
                 tls_server_name="not-in-the-cert.test") as c, pytest.raises(Unavailable):
        c.list_spaces()


def test_tls_rejects_plaintext_and_untrusted_ca(tls_server: App, pki: Pki) -> None:
    with _client(tls_server.port) as c, pytest.raises(Unavailable):
        c.list_spaces()
    with _client(tls_server.port, root_certificates=pki.rogue_ca) as c, \
            pytest.raises(Unavailable):
        c.list_spaces()


# -------------------------------------------------------------------------- mTLS
def test_mtls_needs_a_client_certificate_from_the_ca(mtls_server: App, pki: Pki) -> None:
    with _client(mtls_server.port, root_certificates=pki.ca, client_cert=pki.client_cert,
                 client_key=pki.client_key, token=TOKEN) as c:
        assert c.health() == "SERVING"
        name = unique_name("mtls")
        assert c.register_device(name, "nasbench201", _measurements()).num_samples == 10
        assert c.delete_device(name, "nasbench201")
    with _client(mtls_server.port, root_certificates=pki.ca) as c, pytest.raises(Unavailable):
        c.list_spaces()  # no client certificate
    with _client(mtls_server.port, root_certificates=pki.ca, client_cert=pki.rogue_client_cert,
                 client_key=pki.rogue_client_key) as c, pytest.raises(Unavailable):
        c.list_spaces()  # certificate from another CA
    with _client(mtls_server.port) as c, pytest.raises(Unavailable):
        c.list_spaces()  # plaintext


def test_sdk_rejects_half_a_client_key_pair(pki: Pki) -> None:
    with pytest.raises(ValueError, match="client_cert"):
        OracleClient("127.0.0.1:1", root_certificates=pki.ca, client_cert=pki.client_cert)
    with pytest.raises(ValueError, match="client_cert"):
        OracleClient("127.0.0.1:1", root_certificates=pki.ca, client_key=pki.client_key)


# ------------------------------------------------------------------------ tokens
@pytest.fixture(scope="module")
def token_server(nb201_model, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("token"), write_token=TOKEN)
    yield app
    app.stop(0.5)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer wrong"),),
        (("authorization", f"Bearer {TOKEN}x"),),
        (("authorization", f"Bearer {TOKEN[:-1]}"),),
        (("authorization", TOKEN),),
        (("authorization", f"Basic {TOKEN}"),),
        (("authorization", "Bearer "),),
        (("x-token", TOKEN),),
    ],
)
def test_write_rpcs_need_the_token(token_server: App, metadata) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as ch:
        call = ch.unary_unary("/latency_oracle.v1.LatencyOracle/DeleteDevice")
        for method in ("RegisterDevice", "AddMeasurements", "DeleteDevice"):
            call = ch.unary_unary(f"/latency_oracle.v1.LatencyOracle/{method}")
            with pytest.raises(grpc.RpcError) as info:
                call(b"", timeout=5, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
            assert TOKEN not in (info.value.details() or "")


def test_token_server_reads_open_writes_with_token(token_server: App) -> None:
    name = unique_name("tok")
    with _client(token_server.port) as anon:
        assert anon.list_devices("nasbench201")
        assert anon.health() == "SERVING"
        with pytest.raises(Unauthenticated, match="authorization"):
            anon.register_device(name, "nasbench201", _measurements())
    with _client(token_server.port, token=TOKEN) as c:
        c.register_device(name, "nasbench201", _measurements())
        assert c.add_measurements(name, _measurements(seed=1), "nasbench201").num_samples == 20
    with _client(token_server.port, token="bearer-case") as bad, \
            pytest.raises(Unauthenticated):
        bad.delete_device(name, "nasbench201")
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as ch:  # scheme is case-blind
        call = ch.unary_unary("/latency_oracle.v1.LatencyOracle/DeleteDevice")
        from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb

        req = pb.DeleteDeviceRequest(name=name, space="nasbench201").SerializeToString()
        resp = pb.DeleteDeviceResponse.FromString(
            call(req, timeout=5, metadata=(("authorization", f"bearer {TOKEN}"),)))
        assert resp.deleted


def test_read_token_required(nb201_model, tmp_path) -> None:
    app = _start(nb201_model, tmp_path, write_token=TOKEN, read_token_required=True)
    try:
        with _client(app.port) as anon:
            assert anon.health() == "SERVING"  # probes stay open
            for call in (lambda c: c.list_spaces(), lambda c: c.list_devices("nasbench201"),
                         lambda c: c.rank("nasbench201", SPACE.sample(3, rng=0), "pixel3")):
                with pytest.raises(Unauthenticated):
                    call(anon)
        with _client(app.port, token=TOKEN) as c:
            assert c.rank("nasbench201", SPACE.sample(3, rng=0), "pixel3").num_architectures == 3
    finally:
        app.stop(0)


def test_token_check_is_constant_time(monkeypatch) -> None:
    """Tokens are held hashed; the presented token's hash is compared with EVERY entry by
    ``hmac.compare_digest`` (no early exit), so the time does not depend on which entry, if
    any, matched."""
    import hashlib
    import hmac

    from oracle_server import tenants

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the hmac module tenants uses
    auth = tenants.Authenticator(write_token=TOKEN)
    digest = hashlib.sha256(TOKEN.encode()).digest()
    assert auth.identify((("authorization", f"Bearer {TOKEN}"),)).tenant == "admin"
    with pytest.raises(Unauthenticated):
        auth.identify((("authorization", "Bearer nope"),))
    assert calls == [(digest, digest), (hashlib.sha256(b"nope").digest(), digest)]
    assert TOKEN.encode() not in repr(auth.table).encode()  # held hashed, never in clear


# -------------------------------------------------------------------------- logs
@pytest.mark.postgres
@pytest.mark.skipif(postgres_available() is not None, reason="needs the local PostgreSQL")
def test_start_up_log_masks_token_and_database_password(tmp_path) -> None:
    password = "hunter2-db-pass"
    url = PG_URL.replace("postgres@", f"postgres:{password}@")  # trust auth ignores it
    args = serve_args(tmp_path, "--database-url", url)
    with server_process(args, env={"ORACLE_WRITE_TOKEN": TOKEN}) as srv:
        srv.wait_serving()
        with _client(srv.port) as anon, pytest.raises(OracleClientError):
            anon.register_device(unique_name("x"), "nasbench201", _measurements())
        assert srv.terminate(30) == 0
    text = "\n".join(srv.lines)
    assert TOKEN not in text and password not in text
    start = next(json.loads(line) for line in srv.lines if '"starting"' in line)
    assert start["settings"]["write_token"] == "***"
    assert start["settings"]["database_url"] == "postgresql+psycopg://***@127.0.0.1:5432/test"
