"""Typed head parameters: one frozen dataclass per head kind, JSON in and out.

A fitted head is stored as plain JSON (``HeadFit.params``). ``HeadParams.from_dict`` turns
that into the head's dataclass, checking every field against its annotation (numbers,
1-D numeric lists, optional values) and the head's own consistency rules (``check``); a
bad stored head fails with an error naming the head kind and the field. ``to_dict`` gives
the JSON back (lists, Python numbers, every field).

Field annotations understood: ``float``, ``int``, ``float | None``, ``Vector`` (1-D
float64 array), ``IntVector`` (1-D int64 array), ``FloatTuple | None`` (floats or None).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, TypeVar, get_type_hints

import numpy as np

Vector = Annotated[np.ndarray, "float64 vector"]
IntVector = Annotated[np.ndarray, "int64 vector"]
FloatTuple = tuple[float, ...]

P = TypeVar("P", bound="HeadParams")


class ParamsError(ValueError):
    """A stored head's parameters do not match its kind."""

    def __init__(self, kind: str, field: str, problem: str) -> None:
        super().__init__(f"head kind '{kind}': field '{field}' {problem}")
        self.kind, self.field = kind, field


def _number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _as_float(x: Any) -> float:
    if not _number(x):
        raise TypeError(f"must be a number, got {type(x).__name__}")
    return float(x)


def _as_int(x: Any) -> int:
    if not _number(x) or not float(x).is_integer():
        raise TypeError(f"must be an integer, got {x!r}")
    return int(x)


def _as_optional_float(x: Any) -> float | None:
    return None if x is None else _as_float(x)


def _as_vector(x: Any) -> np.ndarray:
    if isinstance(x, (str, bytes, Mapping)) or not hasattr(x, "__len__"):
        raise TypeError(f"must be a list of numbers, got {type(x).__name__}")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("must be a list of numbers") from None
    if a.ndim != 1:
        raise TypeError(f"must be a flat list of numbers, got shape {a.shape}")
    return a


def _as_int_vector(x: Any) -> np.ndarray:
    a = _as_vector(x)
    if not np.all(np.mod(a, 1.0) == 0.0):
        raise TypeError("must be a list of integers")
    return a.astype(np.int64)


def _as_float_tuple(x: Any) -> tuple[float, ...] | None:
    return None if x is None else tuple(float(v) for v in _as_vector(x))


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    float: _as_float, int: _as_int, float | None: _as_optional_float, Vector: _as_vector,
    IntVector: _as_int_vector, FloatTuple | None: _as_float_tuple,
}


def _json(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return [_json(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class HeadParams:
    """Base of the per-kind parameter dataclasses (``eq=False``: fields hold arrays)."""

    _converters: ClassVar[dict[type, dict[str, Callable[[Any], Any]]]] = {}

    @classmethod
    def _fields(cls) -> dict[str, Callable[[Any], Any]]:
        conv = HeadParams._converters.get(cls)
        if conv is None:
            hints = get_type_hints(cls, include_extras=True)
            conv = {}
            for f in dataclasses.fields(cls):
                if hints[f.name] not in _CONVERTERS:
                    raise TypeError(f"{cls.__name__}.{f.name}: unsupported annotation "
                                    f"{hints[f.name]!r} (see heads/params.py)")
                conv[f.name] = _CONVERTERS[hints[f.name]]
            HeadParams._converters[cls] = conv
        return conv

    @classmethod
    def from_dict(cls: type[P], kind: str, d: Mapping[str, Any]) -> P:
        """Parse and validate stored parameters of head kind ``kind``."""
        if not isinstance(d, Mapping):
            raise ParamsError(kind, "*", f"params must be a JSON object, got {type(d).__name__}")
        conv = cls._fields()
        for key in d:
            if key not in conv:
                raise ParamsError(kind, str(key), f"is not a parameter of this kind "
                                                  f"(have {', '.join(conv)})")
        values = {}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        for name, fn in conv.items():
            if name not in d:
                if name in required:
                    raise ParamsError(kind, name, "is missing")
                continue
            try:
                values[name] = fn(d[name])
            except (TypeError, ValueError) as e:
                raise ParamsError(kind, name, str(e)) from None
        params = cls(**values)
        params.check(kind)
        return params

    def check(self, kind: str) -> None:
        """Consistency between fields (e.g. vector lengths); raise ``ParamsError``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``HeadFit.params``)."""
        return {f.name: _json(getattr(self, f.name)) for f in dataclasses.fields(self)}


def same_length(params: HeadParams, kind: str, field: str, n: int) -> None:
    """Raise unless ``params.<field>`` has ``n`` entries."""
    got = len(getattr(params, field))
    if got != n:
        raise ParamsError(kind, field, f"has {got} entries, expected {n}")

