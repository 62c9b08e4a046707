"""Runs ``bcb-emulator`` with SIGKILL sent to itself at a chosen call: a real kill at a known point.

Usage (the kill-and-rerun tests run it as a subprocess)::

    python tests/kill_at.py MODULE:ATTRIBUTE:N:WHEN -- COMMAND [ARGS...]

wraps ``MODULE.ATTRIBUTE`` (a function, or ``Class.method``) so that its `N`-th call in the
process (1-based) kills the process with SIGKILL ``before`` or ``after`` the call runs, then
runs the console script's `main` with ``COMMAND ARGS``. The process dies as a power cut or
the out-of-memory killer would end it: no ``finally``, no ``atexit``, no flush of open files.
A process that never reaches the call exits normally, which the tests check against.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def kill_at(spec: str) -> None:
    """Installs the kill described by `spec` (``MODULE:ATTRIBUTE:N:WHEN``)."""
    module_name, attribute, nth, when = spec.split(":")
    if when not in ("before", "after"):
        raise ValueError(f"`WHEN` must be 'before' or 'after'. Received: {when!r}")
    owner = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == int(nth) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == int(nth) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    split = sys.argv.index("--")
    for spec in sys.argv[1:split]:
        kill_at(spec)
    from bcb_emulator.cli import main

    sys.exit(main(sys.argv[split + 1 :]))
