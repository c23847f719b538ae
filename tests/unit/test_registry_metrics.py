"""Every registry operation's error series exists from start-up (dashboards and rate())."""

from __future__ import annotations

import re
from pathlib import Path

from oracle_server import metrics
from oracle_server.registry import OPERATIONS, Registry

SOURCE = (Path(__file__).resolve().parents[2] / "oracle_server" / "registry.py").read_text()


def test_operations_list_every_operation_the_registry_names() -> None:
    named = set(re.findall(r'_(?:session|guard)\("([a-z_]+)"\)', SOURCE))
    assert named and named <= set(OPERATIONS), named - set(OPERATIONS)


def test_error_series_exist_at_zero_after_start(tmp_path) -> None:
    Registry(f"sqlite:///{tmp_path / 'r.db'}").close()
    samples = {s.labels["operation"]: s.value for m in metrics.REGISTRY_ERRORS.collect()
               for s in m.samples if s.name.endswith("_total")}
    assert set(OPERATIONS) <= set(samples)
