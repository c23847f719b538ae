"""Latency oracle server: one proxy predictor + few-shot per-device heads behind gRPC."""

__version__ = "0.1.0"
