"""When to draw progress bars: only on a terminal unless asked explicitly."""

from __future__ import annotations

import sys


def progress_enabled(progress: bool | None) -> bool:
    """``True``/``False`` as given; ``None`` (the default): only when stderr is a terminal,
    so scripts whose stderr is piped or logged get no carriage-return frames."""
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False
