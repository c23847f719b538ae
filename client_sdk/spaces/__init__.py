"""Search spaces: ``get_space(name)``, ``list_spaces()`` and ``register_space(definition)``.

The three benchmark spaces with bundled tables (NAS-Bench-201, FBNet, OFA-MobileNetV3) are
*bundled*: their names can never be registered again. All three are definitions in the
space language (``spaces/definitions/{nasbench201,fbnet,ofa_mbv3}.yaml``, their tables named
by ``table:``; NAS-Bench-201 in the language's cell form). Every other space is a
definition too: the shipped ones under ``spaces/definitions/`` (MobileNet-V2, ProxylessNAS)
and any a user registers in this process.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from client_sdk.errors import AlreadyExists, SpaceNotFound
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace, Table

if TYPE_CHECKING:
    from client_sdk.spaces.language import Definition

#: the spaces with bundled tables, in listing order: never registered again
BUNDLED = ("nasbench201", "fbnet", "ofa_mbv3")
_INSTANCES: dict[str, SearchSpace] = {}
_LOCK = threading.Lock()

__all__ = ["GENE_DTYPE", "SearchSpace", "Table", "get_space", "list_spaces", "register_space"]


def forget_space(name: str) -> None:
    """Drop a space registered in this process (a registration rolled back); the bundled
    and shipped spaces stay."""
    with _LOCK:
        if name not in BUNDLED and name not in shipped_definitions():
            _INSTANCES.pop(name, None)


@functools.cache
def shipped_definitions() -> Mapping[str, str]:
    """Name -> YAML text of the definitions shipped with the package (read once)."""
    folder = resources.files("client_sdk.spaces") / "definitions"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out[entry.name.removesuffix(".yaml")] = entry.read_text()
    return MappingProxyType(out)


@functools.cache
def shipped_definition(name: str) -> Definition | None:
    """The validated definition of a shipped space, its YAML parsed once per process and
    shared by ``get_space``, ``table_hook.check_allowed`` and the layout modules
    (``spaces.fbnet``, ``spaces.ofa_mbv3``); None for a name nothing ships."""
    text = shipped_definitions().get(name)
    if text is None:
        return None
    from client_sdk.spaces.language import load_text, validate_definition

    return validate_definition(load_text(text))


def list_spaces() -> list[str]:
    """Bundled spaces, shipped definitions, then spaces registered in this process."""
    names = list(dict.fromkeys([*BUNDLED, *shipped_definitions()]))
    return names + [n for n in _INSTANCES if n not in names]


def get_space(name: str) -> SearchSpace:
    """The (process-wide, immutable) space object; ``NotFound`` for an unknown name."""
    found = _INSTANCES.get(name)
    if found is not None:
        return found
    with _LOCK:
        if name in _INSTANCES:
            return _INSTANCES[name]
        definition = shipped_definition(name) if isinstance(name, str) else None
        if definition is None:
            known = ", ".join(list_spaces())
            raise SpaceNotFound(f"unknown search space '{name}' (known: {known})")
        from client_sdk.spaces.defined import space_from_definition

        space = space_from_definition(definition)
        _INSTANCES[name] = space
        return space


def register_space(definition: Any) -> SearchSpace:
    """Interpret a definition (mapping or YAML/JSON text, or a space already interpreted
    from one) and make it known by its name.

    Idempotent: the same definition again returns the registered space; a *different*
    definition under a known name raises ``AlreadyExists`` (spaces are versioned by name).
    """
    from client_sdk.spaces.defined import space_from_definition

    space = definition if isinstance(definition, SearchSpace) else space_from_definition(definition)
    with _LOCK:
        if space.name in BUNDLED:
            raise AlreadyExists(f"'{space.name}' is a bundled space; choose another name")
        existing = _INSTANCES.get(space.name)
        if existing is not None:
            definition = getattr(existing, "definition", None)
            if (
                definition is not None
                and definition.canonical_json() == space.definition.canonical_json()
            ):
                return existing
            raise AlreadyExists(
                f"space '{space.name}' is registered with another definition; "
                "register the changed one under a new name (e.g. "
                f"'{space.name}_v2')"
            )
        if space.name in shipped_definitions():
            shipped = space_from_definition(shipped_definition(space.name))
            if shipped.definition.canonical_json() != space.definition.canonical_json():
                raise AlreadyExists(
                    f"'{space.name}' is a shipped space with another "
                    "definition; choose another name"
                )
            space = shipped
        _INSTANCES[space.name] = space
        return space
