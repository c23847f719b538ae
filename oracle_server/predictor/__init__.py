"""The latency predictor: ONE proxy over basis devices + cheap per-device heads.

Public API (used by the gRPC service and the evaluation CLI):

* ``build_model(space, holdout_devices=(), cache_dir=None, basis_devices=None)``
  -> ``LatencyModel`` (``features``, ``basis``, ``fit_head``, ``basis_head``,
  ``suggest_references``, ``save`` / ``load``);
* ``HeadFit`` (frozen, JSON-able via ``to_dict`` / ``from_dict``) and ``Prediction``
  (point latency, log-normal ``interval`` and ``prob_below``).
"""

from oracle_server.predictor.head_fit import HeadFit, Prediction
from oracle_server.predictor.heads import HEAD_KINDS, spearman
from oracle_server.predictor.model import LatencyModel, build_model
from oracle_server.predictor.proxy import Proxy, ProxyConfig

__all__ = [
    "HEAD_KINDS",
    "HeadFit",
    "LatencyModel",
    "Prediction",
    "Proxy",
    "ProxyConfig",
    "build_model",
    "spearman",
]
