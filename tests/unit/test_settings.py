"""Settings: precedence (defaults < env < flags < overrides), validation, secret masking, and
the server/SDK keepalive options that must agree (no ``too_many_pings`` GOAWAY)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from client_sdk._requests import channel_options
from oracle_server.app import MIN_CLIENT_PING_INTERVAL_MS, server_options
from oracle_server.settings import Settings, load_settings, redact_url
from tests.helpers import REPO, serve_flags


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.reflection is True and s.write_token == "" and not s.read_token_required
    assert s.max_concurrent_rpcs == 64 and s.max_devices_per_request == 64
    assert s.max_message_bytes == 64 * 1024 * 1024 and s.max_measurements == 10_000
    assert s.resolved_database_url.startswith("sqlite:///")


def test_precedence_env_then_flags_then_overrides() -> None:
    env = {"ORACLE_MAX_BATCH": "10", "ORACLE_WORKERS": "3", "ORACLE_REFLECTION": "off",
           "ORACLE_HOLDOUT_DEVICES": "a, b,,c"}
    s = load_settings(serve_flags("--max-batch", "20"), env=env)
    assert (s.max_batch, s.workers, s.reflection) == (20, 3, False)
    assert s.holdout_devices == ("a", "b", "c")
    assert load_settings(serve_flags("--max-batch", "20"), env=env, max_batch=30).max_batch == 30


def test_boolean_flags_both_ways() -> None:
    assert load_settings(serve_flags("--no-reflection"), env={}).reflection is False
    assert load_settings(serve_flags("--reflection"), env={"ORACLE_REFLECTION": "0"}).reflection
    with pytest.raises(ValueError, match="boolean"):
        load_settings(env={"ORACLE_REFLECTION": "maybe"})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_concurrent_rpcs": 0}, "max_concurrent_rpcs"),
        ({"max_devices_per_request": -1}, "max_devices_per_request"),
        ({"max_message_bytes": 0}, "max_message_bytes"),
        ({"max_measurements": 0}, "max_measurements"),
        ({"workers": 0}, "workers"),
        ({"port": 70000}, "port"),
        ({"grace_s": -1.0}, "grace_s"),
        ({"tls_cert": "c.pem"}, "tls_key"),
        ({"tls_key": "k.pem"}, "tls_cert"),
        ({"tls_client_ca": "ca.pem"}, "tls_client_ca"),
        ({"read_token_required": True}, "write_token"),
        ({"write_token": "has space"}, "write_token"),
        ({"write_token": "tab\there"}, "write_token"),
        ({"log_format": "xml"}, "log_format"),
    ],
)
def test_inconsistent_settings_are_rejected(changes: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Settings(**changes)


def test_cli_exits_2_on_invalid_setting() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "oracle_server", "serve", "--max-batch", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert proc.returncode == 2 and "max_batch" in proc.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://u:pw@db:5432/x", "postgresql+psycopg://***@db:5432/x"),
        ("postgresql://u@db/x?sslpassword=pw&application_name=o",
         "postgresql://***@db/x?sslpassword=***&application_name=o"),
        ("postgresql://db/x?password=pw", "postgresql://db/x?password=***"),
        ("sqlite:////tmp/a@b/registry.db", "sqlite:////tmp/a@b/registry.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_secrets_never_in_repr_or_redacted() -> None:
    s = Settings(write_token="tok-123", database_url="postgresql://u:pw-456@db/x")
    for text in (repr(s), str(s), json.dumps(s.redacted())):
        assert "tok-123" not in text and "pw-456" not in text
    assert s.redacted()["write_token"] == "***"


def test_settings_command_masks_secrets() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "oracle_server", "settings", "--database-url",
         "postgresql://u:pw-789@db/x"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env={"ORACLE_WRITE_TOKEN": "tok-789", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "pw-789" not in proc.stdout and "tok-789" not in proc.stdout
    assert json.loads(proc.stdout)["write_token"] == "***"


def test_keepalive_server_and_sdk_agree() -> None:
    server = dict(server_options(Settings()))
    for retries in (True, False):
        client = dict(channel_options(1 << 20, False, retries, None))
        # the client never pings more often than the server accepts...
        assert client["grpc.keepalive_time_ms"] >= MIN_CLIENT_PING_INTERVAL_MS
        assert server["grpc.http2.min_recv_ping_interval_without_data_ms"] <= (
            client["grpc.keepalive_time_ms"])
        # ...idle pings are allowed on both sides, and strikes never end in GOAWAY
        assert client["grpc.keepalive_permit_without_calls"] == 1
        assert server["grpc.keepalive_permit_without_calls"] == 1
        assert server["grpc.http2.max_ping_strikes"] == 0
    assert server["grpc.max_receive_message_length"] == Settings().max_message_bytes


def test_only_setting_errors_are_invalid_settings(monkeypatch, tmp_path, capsys) -> None:
    """A configuration the tenancy refuses exits 2 with its message; any other ValueError at
    start-up is a bug, not an "invalid setting": it propagates with its traceback."""
    from oracle_server import app as app_mod
    from oracle_server.settings import Settings

    settings = Settings(port=0, metrics_port=-1, data_dir=tmp_path)
    no_logging_setup = ("setup_logging", lambda *_a, **_k: None)  # keep the test's logging
    monkeypatch.setattr(app_mod, *no_logging_setup)

    def refuse(_settings):
        raise ValueError("tokens.yaml: tenant 'a': no token hash given")

    monkeypatch.setattr(app_mod.Tenancy, "from_settings", staticmethod(refuse))
    assert app_mod.serve_forever(settings) == 2
    assert "invalid setting: tokens.yaml: tenant 'a'" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(app_mod, *no_logging_setup)

    def broken(*_args, **_kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(app_mod, "OracleServicer", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        app_mod.serve_forever(settings)
