"""Latency oracle server: one proxy predictor + few-shot per-device heads behind gRPC."""

from client_sdk._extras import require

require(
    "server", "the oracle server (oracle_server)",
    "lightgbm", "scipy", "sqlalchemy", "prometheus_client", "safetensors", "numba",
)

__version__ = "0.1.0"
