"""Builds and runs the server: servicer, health, reflection, interceptor, metrics, drain."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from client_sdk.errors import DeviceNotFound
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.spaces import get_space
from oracle_server import __version__, metrics, priority, runtime
from oracle_server.interceptors import ORACLE_SERVICE, Drain, OracleInterceptor
from oracle_server.logs import setup_logging
from oracle_server.oracle import Oracle
from oracle_server.predictor import LatencyModel, build_model, tree_tables
from oracle_server.registry import Registry
from oracle_server.servicer import OracleServicer
from oracle_server.settings import SettingError, Settings
from oracle_server.space_catalog import SpaceCatalog
from oracle_server.store import DeviceStore
from oracle_server.tenants import Tenancy

log = logging.getLogger(__name__)

#: Expired write request ids are deleted this often (each replica; a cheap indexed DELETE).
REQUEST_PURGE_INTERVAL_S = 300.0
#: After the last in-flight RPC's handler returned, how long a drain keeps the transport up so
#: its reply (possibly tens of MB behind HTTP/2 flow control) can still be read; within grace.
DRAIN_LINGER_S = 2.0
#: Registry syncs (at most) between loading the registered devices and turning SERVING.
CATCH_UP_SYNCS = 3

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def holdout_for(space: str, holdout: tuple[str, ...]) -> list[str]:
    """Holdout names that apply to ``space``: 'space/dev' entries, or bare names it has."""
    devices = set(get_space(space).table.devices)
    out = []
    for item in holdout:
        sp, sep, dev = item.partition("/")
        if sep and sp == space:
            out.append(dev)
        elif not sep and item in devices:
            out.append(item)
    return out


def load_models(settings: Settings) -> dict[str, LatencyModel]:
    known = {d for s in settings.spaces for d in get_space(s).table.devices}
    for item in settings.holdout_devices:
        name = item.partition("/")[2] or item
        if name not in known:
            raise DeviceNotFound(f"--holdout-devices: unknown table device '{item}'")
    models = {}
    for space in settings.spaces:
        t0 = time.perf_counter()
        holdout = holdout_for(space, settings.holdout_devices)
        models[space] = build_model(space, holdout, cache_dir=settings.resolved_cache_dir)
        seconds = round(time.perf_counter() - t0, 3)
        log.info("proxy ready", extra={"space": space, "seconds": seconds})
    return models


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    key = Path(settings.tls_key).read_bytes()
    cert = Path(settings.tls_cert).read_bytes()
    ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


#: Server-side keepalive policy. The SDK pings every 30 s (``client_sdk._requests``), above
#: the 10 s minimum accepted here, and ping strikes are unlimited, so a well-behaved client
#: is never sent a ``too_many_pings`` GOAWAY (``tests/unit/test_settings.py`` checks both).
MIN_CLIENT_PING_INTERVAL_MS = 10_000


def server_options(s: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", s.max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class App:
    """A running (or startable) oracle server. ``port``/``metrics_port`` are the bound ones."""

    settings: Settings
    models: Mapping[str, LatencyModel] | None = None
    server: grpc.Server = field(init=False)
    health: health.HealthServicer = field(init=False)
    oracle: Oracle | None = field(init=False, default=None)
    registry: Registry | None = field(init=False, default=None)
    port: int = field(init=False, default=0)
    metrics_port: int = field(init=False, default=-1)
    ready: threading.Event = field(init=False, default_factory=threading.Event)
    failed: BaseException | None = field(init=False, default=None)
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    _threads: list[threading.Thread] = field(init=False, default_factory=list)
    _metrics_server: object = field(init=False, default=None)
    _executor: futures.ThreadPoolExecutor = field(init=False)
    tenancy: Tenancy = field(init=False)
    drain: Drain = field(init=False, default_factory=Drain)

    def __post_init__(self) -> None:
        s = self.settings
        try:  # the tokens file, the tenant policy, the shared limits' Redis credentials
            self.tenancy = Tenancy.from_settings(s)
        except ValueError as exc:
            raise SettingError(str(exc)) from exc
        self._executor = futures.ThreadPoolExecutor(
            max_workers=s.workers, thread_name_prefix="oracle-rpc"
        )
        self.server = grpc.server(
            self._executor,
            interceptors=[
                OracleInterceptor(
                    read_token_required=s.read_token_required,
                    tenancy=self.tenancy,
                    drain=self.drain,
                    request_read_timeout_s=s.request_read_timeout_s,
                )
            ],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
            options=server_options(s),
        )
        servicer = OracleServicer(lambda: self.oracle, s.max_batch, self.tenancy)
        pb_grpc.add_LatencyOracleServicer_to_server(servicer, self.server)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for name in ("", ORACLE_SERVICE):
            self.health.set(name, NOT_SERVING)
        if s.reflection:
            names = (
                pb.DESCRIPTOR.services_by_name["LatencyOracle"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, self.server)
        address = f"{s.host}:{s.port}"
        creds = server_credentials(s)
        if creds is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, creds)
        if self.port == 0:
            raise RuntimeError(f"could not bind {address}")
        if s.malloc_tuning:
            runtime.tune_allocator()
        # Process-wide, like the GIL they tune: the last App built in a process sets them.
        sys.setswitchinterval(s.gil_switch_interval_ms / 1e3)
        priority.GATE.configure(s.large_call_work)
        metrics.BUILD_INFO.info({"version": __version__})
        metrics.READY.set(0)

    # -------------------------------------------------------------- lifecycle
    def start(self, block_until_ready: bool = False, timeout_s: float | None = None) -> App:
        if self.settings.metrics_port >= 0:
            srv, _thread = start_http_server(
                self.settings.metrics_port, addr=self.settings.host, registry=metrics.REGISTRY
            )
            self._metrics_server = srv
            self.metrics_port = srv.server_port
        self.server.start()
        log.info("listening", extra={"port": self.port, "metrics_port": self.metrics_port})
        loader = threading.Thread(target=self._load, name="oracle-loader", daemon=True)
        loader.start()
        self._threads.append(loader)
        if block_until_ready:
            if not self.ready.wait(timeout_s):
                raise TimeoutError("server did not become ready in time")
            if self.failed is not None:
                raise RuntimeError("server failed to start") from self.failed
        return self

    def _load(self) -> None:
        try:
            s = self.settings
            models = self.models if self.models is not None else load_models(s)
            tree_tables.set_threads(s.rank_threads)
            self.registry = Registry(s.resolved_database_url, request_ttl_s=s.request_id_ttl_s)
            store = DeviceStore(models, self.registry, max_measurements=s.max_measurements)
            oracle = Oracle(
                store,
                max_batch=s.max_batch,
                max_devices_per_request=s.max_devices_per_request,
                gate=priority.GATE,
            )
            catalog = SpaceCatalog(
                store, lambda name: build_model(name, cache_dir=s.resolved_cache_dir), self.registry
            )
            oracle.catalog = catalog
            store.before_sync = catalog.sync
            spaces = catalog.sync()  # spaces registered from definitions, before devices
            if spaces:
                log.info("registered spaces loaded", extra={"spaces": spaces})
            loaded = store.load_registered()
            # Catch up with what other replicas wrote while this one was fitting heads (a
            # restart under load): a replica turns SERVING with a current device map.
            for _ in range(CATCH_UP_SYNCS):
                if not store.sync():
                    break
            self.oracle = oracle
            log.info("registry loaded", extra={"registered_devices": loaded})
            if not self._stopping.is_set():
                for name in ("", ORACLE_SERVICE):
                    self.health.set(name, SERVING)
                metrics.READY.set(1)
            tree_tables.start_kernel()  # after SERVING: numba's import is not on start-up
            threading.Thread(target=warm_imports, name="oracle-warm", daemon=True).start()
            self._threads.append(store.start_polling(s.sync_interval_s, stop=self._stopping))
            purger = threading.Thread(
                target=self._purge_loop, args=(self.registry,), name="oracle-purge", daemon=True
            )
            purger.start()
            self._threads.append(purger)
        except BaseException as exc:  # reported through health and logs
            self.failed = exc
            log.exception("start-up failed")
        finally:
            self.ready.set()

    def _purge_loop(self, registry: Registry) -> None:
        """Delete expired write request ids every ``REQUEST_PURGE_INTERVAL_S`` (each replica;
        an indexed DELETE, so concurrent purges are harmless)."""
        while True:
            try:
                purged = registry.purge_requests()
                if purged:
                    log.info("expired request ids purged", extra={"purged": purged})
            except Exception as exc:  # the database may be away; next time
                log.warning("request id purge failed: %s", exc)
            if self._stopping.wait(REQUEST_PURGE_INTERVAL_S):
                return

    def stop(self, grace_s: float | None = None) -> None:
        """Drain: NOT_SERVING at once, refuse new RPCs, finish in-flight ones within grace.

        The in-flight calls are waited for here, with a linger for their replies to be read
        (``Drain``), before grpc's ``stop``: grpc tears the transport down as soon as its last
        call completes, which can cut off a large reply the client is still reading."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        grace = self.settings.grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        self.health.enter_graceful_shutdown()
        metrics.READY.set(0)
        self.drain.begin()
        log.info("draining", extra={"grace_s": grace, "in_flight": self.drain.in_flight})
        if not self.drain.wait_idle(grace, min(DRAIN_LINGER_S, grace)):
            log.warning(
                "grace period over with RPCs in flight; cancelling them",
                extra={"in_flight": self.drain.in_flight},
            )
        self.server.stop(max(0.0, deadline - time.monotonic())).wait()
        self._reap_workers()
        if self.oracle is not None:
            self.oracle.store.stop_polling()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()  # type: ignore[attr-defined]
        if self.registry is not None:
            self.registry.close()
        if self.tenancy.fair_share.shared is not None:
            self.tenancy.fair_share.shared.close()
        log.info("stopped")

    def _reap_workers(self, timeout_s: float = 5.0) -> None:
        """After the grace period grpc has cancelled what was left; handlers see it
        (``context.is_active()``) and return. Shut the pool down so no worker thread is left."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        for thread in list(getattr(self._executor, "_threads", ())):
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in getattr(self._executor, "_threads", ()) if t.is_alive()]
        if alive:
            log.warning("RPC worker threads still busy after drain", extra={"threads": alive})

    def wait(self) -> None:
        self.server.wait_for_termination()


#: imported lazily by request handlers (head fits, budget probabilities): loaded in the
#: background once SERVING, so neither start-up nor a first call pays for them.
#: ``scipy.stats`` (CompareDevices only; +65 MB resident) stays lazy: its first call pays.
WARM_MODULES = ("scipy.optimize", "scipy.special")


def warm_imports() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - scipy is a server dependency
            log.warning("could not pre-import", extra={"module": name})


def serve_forever(settings: Settings) -> int:
    """The `oracle-server serve` main loop: start, wait for SIGTERM/SIGINT, drain, exit 0."""
    setup_logging(settings.log_level, settings.log_format)
    log.info("starting", extra={"version": __version__, "settings": settings.redacted()})
    try:
        app = App(settings)
    except SettingError as exc:  # e.g. Redis refusing --limits-url's credentials
        log.error("invalid setting: %s", exc)
        print(f"oracle-server: invalid setting: {exc}", file=sys.stderr)
        return 2
    app.start()
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not done.wait(0.5):
        if app.failed is not None:
            app.stop(0)
            return 1
    app.stop()
    return 0
