"""The reference transport model and its numba kernels.

Every kernel is compiled with ``cache=True``: the first process compiles them (about 40 s on
2 cores) and later ones load the machine code (about a second). numba keeps its cache next to
the sources (``bcb_emulator/reference/__pycache__``); where the package is installed
read-only it uses the user's cache (``~/.cache/numba``). Where neither is writable,
importing this package sets numba's cache folder to ``bcb_emulator-numba-<uid>`` in the
system's temporary folder, so that at least the processes of one boot share it. A
``NUMBA_CACHE_DIR`` set in the environment is always used as it is.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba
from numba.misc.appdirs import AppDirs


def _writable(folder: Path) -> bool:
    """Whether `folder` exists or can be made, and a file can be written in it (numba's test)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def numba_cache_dir(package_cache: Path, user_cache: Path, environ: dict) -> Path | None:
    """The cache folder numba must be told to use, or None where its own choice works.

    Args:
        package_cache: the ``__pycache__`` folder beside the kernels' sources.
        user_cache: numba's per-user cache folder.
        environ: the process environment (``NUMBA_CACHE_DIR`` there wins).
    """
    if environ.get("NUMBA_CACHE_DIR") or _writable(package_cache) or _writable(user_cache):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"bcb_emulator-numba-{uid}"


_CACHE_DIR = numba_cache_dir(
    Path(__file__).parent / "__pycache__",
    Path(AppDirs(appname="numba", appauthor=False).user_cache_dir),
    dict(os.environ),
)
if _CACHE_DIR is not None:
    numba.config.CACHE_DIR = str(_CACHE_DIR)
