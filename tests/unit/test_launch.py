"""oracle_server.launch: the one subprocess launcher, shared by the tests and the benchmarks."""

from __future__ import annotations

import time

import pytest

from oracle_server.launch import ServerProcess
from tests.helpers import REPO


def test_a_server_that_cannot_start_fails_fast_with_its_log() -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="server did not start") as err:
        ServerProcess(["--max-batch", "0"], cwd=REPO, start_timeout_s=60)
    assert time.monotonic() - t0 < 60  # the exit ends the wait, not the timeout
    assert "max_batch" in str(err.value)  # the server's own message is passed on
