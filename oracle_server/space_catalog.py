"""Search spaces registered from definitions (``RegisterSpace``): validate, build, persist,
install — all or nothing — and pick up the ones other replicas registered.

A registration validates the definition (``INVALID_ARGUMENT`` naming the path inside it),
builds the space's model (basis transferred from the bundled spaces: a few seconds), then
records the canonical definition in the registry and installs the model in the store. A
failure at any step leaves nothing behind: no row, no served space, no process-wide space.
The same definition again is answered with the served space; another definition under a
registered name is ``ALREADY_EXISTS`` (versioned by name: register ``name_v2``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from client_sdk.errors import AlreadyExists, SpaceNotFound
from client_sdk.spaces import SearchSpace, forget_space, get_space, register_space
from client_sdk.spaces.defined import space_from_definition
from oracle_server.predictor import LatencyModel
from oracle_server.registry import Registry
from oracle_server.store import DeviceStore

log = logging.getLogger(__name__)

ModelBuilder = Callable[[str], LatencyModel]


class SpaceCatalog:
    """The served spaces' definitions and owners; registrations go through here."""

    def __init__(self, store: DeviceStore, build: ModelBuilder,
                 registry: Registry | None = None) -> None:
        self.store = store
        self.registry = registry
        self._build = build
        self._owners: dict[str, str | None] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reads
    def owner(self, name: str) -> str | None:
        return self._owners.get(name)

    @staticmethod
    def definition_json(space: SearchSpace) -> str:
        definition = getattr(space, "definition", None)
        return definition.canonical_json() if definition is not None else ""

    # ----------------------------------------------------------------- writes
    def register(self, definition: str | bytes | Mapping[str, Any],
                 owner: str | None = None) -> SearchSpace:
        """Register (or find again) the space of ``definition``; see the module docstring."""
        candidate = space_from_definition(definition)  # InvalidSpaceDefinition
        name = candidate.name
        with self._lock:
            served = self.store.models.get(name)
            if served is not None:
                if self.definition_json(served.space) == candidate.definition.canonical_json():
                    return served.space
                raise AlreadyExists(f"space '{name}' is served with another definition; "
                                    f"register the changed one under a new name (e.g. "
                                    f"'{name}_v2')")
            return self._install(candidate, owner, persist=True)

    def sync(self) -> int:
        """Install the spaces other replicas registered (start-up and every poll)."""
        if self.registry is None:
            return 0
        changes = 0
        # every poll asks for the names only; a definition (up to 1 MiB) is read once
        for name in sorted(self.registry.space_names() - set(self.store.models)):
            with self._lock:
                if name in self.store.models:
                    continue
                try:
                    definition, owner = self.registry.load_space(name)
                    self._install(space_from_definition(definition), owner, persist=False)
                    changes += 1
                except Exception:  # one bad row must not stop serving the others
                    log.exception("could not install registered space %s", name)
        return changes

    def _install(self, candidate: SearchSpace, owner: str | None,
                 persist: bool) -> SearchSpace:
        """Make ``candidate`` (a space interpreted from a definition) known, build its
        model, record it (``persist``), then serve it; all or nothing."""
        name = candidate.name
        known_before = _process_knows(name)
        space = register_space(candidate)  # AlreadyExists for a bundled/shipped clash
        try:
            model = self._build(name)
            if persist and self.registry is not None:
                self.registry.create_space(name, self.definition_json(space), owner)
        except BaseException:
            if not known_before:
                forget_space(name)
            raise
        self.store.install_model(name, model)
        self._owners[name] = owner
        log.info("space registered", extra={"space": name, "genes": space.num_genes,
                                            "persisted": persist})
        return space


def _process_knows(name: str) -> bool:
    try:
        get_space(name)
    except SpaceNotFound:
        return False
    return True
