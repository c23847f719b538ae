"""The ONE proxy predictor: architecture features -> latencies on a set of basis devices.

Two model families share one interface (``Proxy.predict(features) -> (n, B) ms``):

* ``lgbm``: one LightGBM regressor per basis device on log-latency, wrapped as one object
  (saved as LightGBM's own text format);
* ``mlp``: one torch multi-output MLP on log-latency (saved as safetensors).

OneProxy's setting (a single proxy device) is simply a proxy with one basis device.
Every proxy also carries a per-device *linear* model in milliseconds (ridge on the
features, ``linear_weights``): AdaProxy's transfer adapts those weights per target.

Artifacts are a directory: ``proxy.json`` (format version, kind, devices, training rows
hash, configuration), ``proxy_arrays.npz`` (no pickles) and the model files. A LightGBM
proxy also carries its exact lookup-table form (``tree_tables.npz``, see ``tree_tables.py``):
the fast evaluation path of ``LatencyModel.basis``; artifacts written before it get it added
on their first load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROXY_FORMAT_VERSION = 1
LOG_FLOOR_MS = 1e-3
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProxyConfig:
    """Training configuration; part of the artifact and of the cache key."""

    kind: str = "lgbm"  # "lgbm" | "mlp"
    num_rounds: int = 300
    num_leaves: int = 4  # non-test validation, mean of 3 spaces: 4 > 7 > 15 > 31 > 63
    learning_rate: float = 0.1
    min_data_in_leaf: int = 5
    hidden: int = 256
    epochs: int = 60
    batch_size: int = 256
    linear_ridge: float = 1e-2
    linear_init: bool = True  # learn the residual of a log-space ridge (helps additive spaces)
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ProxyConfig:
        return cls(**d)


def to_log(latency_ms: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(latency_ms, dtype=np.float64), LOG_FLOOR_MS))


def rows_hash(rows: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


def write_meta(file: Path, version: int, meta: dict[str, Any]) -> None:
    """An artifact's JSON description, its ``format_version`` first."""
    file.write_text(json.dumps({"format_version": version, **meta}, indent=2))


def read_meta(file: Path, what: str, version: int) -> dict[str, Any]:
    """An artifact's JSON description; ``ValueError`` unless it is of format ``version``."""
    meta = json.loads(file.read_text())
    if meta["format_version"] != version:
        raise ValueError(f"{what} format {meta['format_version']} != {version}")
    return meta


def fit_linear(features: np.ndarray, latency_ms: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge of latency (ms) on ``[features, 1]`` for every device: ``(F + 1, B)``."""
    x = np.c_[features.astype(np.float64), np.ones(len(features))]
    gram = x.T @ x
    reg = ridge * len(x) * np.eye(gram.shape[0])
    reg[-1, -1] = 0.0
    return np.linalg.solve(gram + reg, x.T @ latency_ms)


class Proxy:
    """A trained proxy: ``predict(features)`` gives ``(n, B)`` latencies in ms."""

    def __init__(
        self,
        space: str,
        devices: tuple[str, ...],
        config: ProxyConfig,
        train_rows: np.ndarray,
        models: list,
        linear_weights: np.ndarray,
        log_linear_weights: np.ndarray,
    ) -> None:
        self.space = space
        self.devices = tuple(devices)
        self.config = config
        self.train_rows = np.asarray(train_rows, dtype=np.int64)
        self._model_list: list | None = models
        self._model_loader = None  # loads the models on first use (see ``load``)
        self._model_lock = threading.Lock()
        self.linear_weights = linear_weights
        self.log_linear_weights = log_linear_weights
        self.tables = None  # TreeTables: exact fast form of an lgbm proxy (or None)

    @property
    def _models(self) -> list:
        """The tree / MLP models; a loaded LightGBM proxy with tree tables parses its trees
        only when something needs them (the reference path, re-tabulation)."""
        if self._model_list is None:
            with self._model_lock:
                if self._model_list is None:
                    assert self._model_loader is not None
                    self._model_list = self._model_loader()
        return self._model_list

    def build_tables(self) -> None:
        """Tabulate the trees (``tree_tables.py``) and check them against ``predict``;
        a proxy the tables cannot reproduce exactly keeps ``tables = None``."""
        if self.config.kind != "lgbm":
            return
        from client_sdk.spaces import get_space
        from oracle_server.predictor import tree_tables as tt

        space = get_space(self.space)
        try:
            tt.check_features(space, np.concatenate([space.sample(2000, 1), space.table.genes]))
            tables = tt.build_tables(space, self._models, self.log_linear_weights)
            err = tt.verify(tables, self.predict, space)
        except tt.Unsupported as exc:
            log.warning("%s proxy: no tree tables (%s); the reference path serves", self.space,
                        exc)
            return
        if not err <= tt.VERIFY_RTOL:
            log.warning("%s proxy: tree tables differ from the trees by %.3g (relative); the "
                        "reference path serves", self.space, err)
            return
        self.tables = tables

    # ---------------------------------------------------------------- predict
    def predict_log(self, features: np.ndarray) -> np.ndarray:
        """``(n, B)`` predicted log-latency (log ms)."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, len(self.devices)))
        base = x.astype(np.float64) @ self.log_linear_weights[:-1] + self.log_linear_weights[-1]
        if self.config.kind == "lgbm":
            return base + np.stack([m.predict(x, num_threads=1) for m in self._models], axis=1)
        return base + _mlp_predict(self._models[0], x)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.exp(self.predict_log(features))

    # ---------------------------------------------------------------- persist
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "space": self.space,
            "kind": self.config.kind,
            "devices": list(self.devices),
            "config": self.config.to_dict(),
            "num_train_rows": len(self.train_rows),
            "train_rows_sha256_16": rows_hash(self.train_rows),
        }
        np.savez(path / "proxy_arrays.npz", train_rows=self.train_rows,
                 linear_weights=self.linear_weights, log_linear_weights=self.log_linear_weights)
        if self.config.kind == "lgbm":
            for i, model in enumerate(self._models):
                (path / f"lgbm_{i:02d}.txt").write_text(model.model_to_string())
        else:
            from safetensors.numpy import save_file

            save_file(_mlp_state(self._models[0]), str(path / "mlp.safetensors"))
        if self.tables is not None:
            from oracle_server.predictor.tree_tables import TABLES_FILE

            self.tables.save(path / TABLES_FILE)
        write_meta(path / "proxy.json", PROXY_FORMAT_VERSION, meta)

    @classmethod
    def load(cls, path: Path) -> Proxy:
        path = Path(path)
        meta = read_meta(path / "proxy.json", "proxy", PROXY_FORMAT_VERSION)
        config = ProxyConfig.from_dict(meta["config"])
        with np.load(path / "proxy_arrays.npz", allow_pickle=False) as arrays:
            train_rows, linear = arrays["train_rows"], arrays["linear_weights"]
            log_linear = arrays["log_linear_weights"]
        devices = tuple(meta["devices"])
        from oracle_server.predictor import tree_tables as tt

        def load_models() -> list:
            if config.kind == "lgbm":
                import lightgbm as lgb

                return [lgb.Booster(model_str=(path / f"lgbm_{i:02d}.txt").read_text())
                        for i in range(len(devices))]
            from safetensors.numpy import load_file

            return [_mlp_from_state(load_file(str(path / "mlp.safetensors")))]

        lazy = config.kind == "lgbm" and (path / tt.TABLES_FILE).exists()
        proxy = cls(meta["space"], devices, config, train_rows,
                    None if lazy else load_models(), linear, log_linear)
        if lazy:
            from client_sdk.spaces import get_space

            proxy._model_loader = load_models
            proxy.tables = tt.TreeTables.load(get_space(proxy.space), path / tt.TABLES_FILE)
        return proxy

    def add_tables(self, path: Path) -> None:
        """Build the tables of a loaded artifact that has none and add them to its directory
        (best effort: a read-only cache still serves, from the tables in memory)."""
        from oracle_server.predictor import tree_tables as tt

        self.build_tables()
        if self.tables is None:
            return
        tmp = Path(path) / f".{tt.TABLES_FILE}.{os.getpid()}.npz"
        try:
            self.tables.save(tmp)
            os.replace(tmp, Path(path) / tt.TABLES_FILE)
        except OSError:
            log.info("could not add tree tables to %s (read-only?)", path)


def train_proxy(
    space: str,
    features: np.ndarray,
    latency_ms: np.ndarray,
    devices: tuple[str, ...],
    train_rows: np.ndarray,
    config: ProxyConfig = ProxyConfig(),
) -> Proxy:
    """Train on ``features`` (n, F) and ``latency_ms`` (n, B) (rows already selected)."""
    start = time.perf_counter()
    y = to_log(latency_ms)
    log_linear = np.zeros((features.shape[1] + 1, y.shape[1]))
    if config.linear_init:
        log_linear = fit_linear(features, y, config.linear_ridge)
        y = y - (features.astype(np.float64) @ log_linear[:-1] + log_linear[-1])
    if config.kind == "lgbm":
        models: list = [_train_lgbm(features, y[:, j], config) for j in range(y.shape[1])]
    elif config.kind == "mlp":
        models = [_train_mlp(features, y, config)]
    else:
        raise ValueError(f"unknown proxy kind '{config.kind}'")
    linear = fit_linear(features, latency_ms, config.linear_ridge)
    log.info("trained %s proxy on %d archs x %d devices in %.1f s", config.kind,
             len(features), len(devices), time.perf_counter() - start)
    return Proxy(space, devices, config, train_rows, models, linear, log_linear)


def _train_lgbm(x: np.ndarray, y: np.ndarray, config: ProxyConfig):
    import lightgbm as lgb

    params = {
        "objective": "regression",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "num_threads": 1,
        "seed": config.seed,
        "verbose": -1,
        "max_bin": 63,
    }
    data = lgb.Dataset(x.astype(np.float32), label=y, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=config.num_rounds)


# ------------------------------------------------------------------------- MLP
def _mlp_module(n_in: int, hidden: int, n_out: int):
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, n_out),
    )


class _MLP:
    """A torch MLP plus the input/output standardisation it was trained with."""

    def __init__(self, net, x_mean: np.ndarray, x_std: np.ndarray,
                 y_mean: np.ndarray, y_std: np.ndarray) -> None:
        self.net, self.x_mean, self.x_std = net, x_mean, x_std
        self.y_mean, self.y_std = y_mean, y_std


def _train_mlp(x: np.ndarray, y: np.ndarray, config: ProxyConfig) -> _MLP:
    import torch

    torch.manual_seed(config.seed)
    x_mean, x_std = x.mean(0), x.std(0) + 1e-6
    y_mean, y_std = y.mean(0), y.std(0) + 1e-6
    xt = torch.from_numpy(((x - x_mean) / x_std).astype(np.float32))
    yt = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
    net = _mlp_module(x.shape[1], config.hidden, y.shape[1])
    steps = config.epochs * max(1, len(x) // config.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (config.batch_size,), generator=gen)
        loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return _MLP(net, x_mean, x_std, y_mean, y_std)


def _mlp_predict(model: _MLP, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        z = torch.from_numpy(((x - model.x_mean) / model.x_std).astype(np.float32))
        out = model.net(z).numpy().astype(np.float64)
    return out * model.y_std + model.y_mean


def _mlp_state(model: _MLP) -> dict[str, np.ndarray]:
    state = {f"net.{k}": v.detach().numpy().copy() for k, v in model.net.state_dict().items()}
    for name in ("x_mean", "x_std", "y_mean", "y_std"):
        state[name] = np.asarray(getattr(model, name))
    return state


def _mlp_from_state(state: dict[str, np.ndarray]) -> _MLP:
    import torch

    n_in, hidden = state["net.0.weight"].shape[1], state["net.0.weight"].shape[0]
    net = _mlp_module(n_in, hidden, state["net.4.weight"].shape[0])
    net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in state.items()
                         if k.startswith("net.")})
    net.eval()
    return _MLP(net, state["x_mean"], state["x_std"], state["y_mean"], state["y_std"])
