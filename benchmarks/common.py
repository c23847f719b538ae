"""What several benchmarks share besides the command line (:mod:`benchmarks._cli`): the proxy
cache the test suite builds (reused, so a benchmark need not train its own), the offline
evaluations' cache, HELP's NAS-Bench-201 device split and the NAS-Bench-201 oracle they run
against (:func:`nb201_serve_args` for a subprocess server, :func:`start_nb201_app` and
:func:`nb201_client` in-process). Of ``tests`` the benchmarks import only ``tests.support``
(servers start with :class:`tests.support.launch.ServerProcess`; the test cache, HELP's split
and the server flags are :mod:`tests.support.nb201`'s, shared with the e2e tests).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.nb201 import TEST_CACHE as TEST_CACHE  # re-exported for the benchmarks
from tests.support.nb201 import help_nb201_split as help_nb201_split
from tests.support.nb201 import nb201_non_train_devices as nb201_non_train_devices
from tests.support.nb201 import nb201_serve_args as nb201_serve_args

if TYPE_CHECKING:
    from client_sdk import OracleClient
    from oracle_server.app import App

#: Proxy artifacts of the offline evaluations (``benchmarks.quality`` and the studies).
EVAL_CACHE = Path("/tmp/latency-oracle-bench-cache")


def start_nb201_app(
    data_dir: Path | str,
    holdout: Sequence[str] = (),
    *,
    cache_dir: Path = TEST_CACHE,
    **settings: Any,
) -> App:
    """An in-process NAS-Bench-201 oracle on 127.0.0.1 (port 0, no metrics port), started and
    SERVING: the proxy of ``cache_dir`` with the ``holdout`` devices held out; ``settings``:
    further :class:`oracle_server.settings.Settings` fields (``workers``, ``max_batch``)."""
    from oracle_server.app import App
    from oracle_server.predictor import build_model
    from oracle_server.settings import Settings

    model = build_model("nasbench201", tuple(holdout), cache_dir=cache_dir)
    config = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=-1,
        data_dir=Path(data_dir),
        spaces=("nasbench201",),
        cache_dir=str(cache_dir),
        **settings,
    )
    return App(config, models={"nasbench201": model}).start(block_until_ready=True, timeout_s=300)


def nb201_client(
    prefix: str, holdout: Sequence[str] = (), *, cache_dir: Path = TEST_CACHE, **settings: Any
) -> tuple[OracleClient, Callable[[], None]]:
    """``(client, close)``: an :class:`client_sdk.OracleClient` (60 s timeout) of a
    :func:`start_nb201_app` oracle on a temporary data directory named ``prefix...``;
    ``close()`` closes the client, stops the oracle and removes the directory."""
    from client_sdk import OracleClient

    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    app = start_nb201_app(tmp.name, holdout, cache_dir=cache_dir, **settings)
    client = OracleClient(f"127.0.0.1:{app.port}", timeout_s=60)

    def close() -> None:
        client.close()
        app.stop(1.0)
        tmp.cleanup()

    return client, close


def nontest_family_splits(space: str):
    """Leave-family-out restricted to non-test devices: for each device family, (its name,
    the proxy's basis = every non-test device outside it, the family's non-test devices).
    HELP's test devices are neither basis nor scored (selection evidence only)."""
    from client_sdk.spaces import get_space
    from oracle_server.evaluation import HELP_SPLITS, families

    test = set(HELP_SPLITS[space].test)
    devices = get_space(space).table.devices
    for family, members in families(space, devices).items():
        scored = [d for d in members if d not in test]
        if scored:
            yield family, tuple(d for d in devices if d not in members and d not in test), scored


def fit_candidates(model, kinds, fit: tuple, y, score: tuple) -> dict:
    """Every available head kind of ``kinds`` fit alone on ``fit`` = (features, basis,
    descriptors) of the samples with latencies ``y`` (ms): ``{kind: (leave-one-out log
    predictions, log predictions on score = (features, basis, descriptors))}`` — what
    ``select_head`` averages, each candidate on its own (selection studies, diagnosis)."""
    import numpy as np

    from oracle_server.predictor.heads import FitInputs, head_kind

    feats, basis, desc = fit
    inp = FitInputs(
        basis,
        np.asarray(feats, dtype=np.float64),
        np.asarray(y, np.float64),
        model.proxy.linear_weights,
        model.cost_matrix,
        desc,
        model.prior,
    )
    s_feats, s_basis, s_desc = score
    out = {}
    for k in kinds:
        kind = head_kind(k)
        if kind.available(inp):
            c = kind.fit(inp)
            out[k] = (
                c.loo_log,
                kind.predict_log(c.params, s_basis, np.asarray(s_feats, np.float64), s_desc),
            )
    return out
