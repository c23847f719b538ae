"""Client SDK of the latency oracle: sync/async gRPC clients, NSGA-II search, onboarding."""

from client_sdk.aio import AsyncOracleClient
from client_sdk.client import OracleClient
from client_sdk.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DeviceNotFound,
    InvalidArchitecture,
    InvalidArgument,
    NotFound,
    OracleClientError,
    ResourceExhausted,
    SpaceNotFound,
    Unauthenticated,
    Unavailable,
)
from client_sdk.types import Comparison, DeviceInfo, RankResult, SpaceInfo

__all__ = [
    "AlreadyExists",
    "AsyncOracleClient",
    "Comparison",
    "DeadlineExceeded",
    "DeviceInfo",
    "DeviceNotFound",
    "InvalidArchitecture",
    "InvalidArgument",
    "NotFound",
    "OracleClient",
    "OracleClientError",
    "RankResult",
    "ResourceExhausted",
    "SpaceInfo",
    "SpaceNotFound",
    "Unauthenticated",
    "Unavailable",
]
