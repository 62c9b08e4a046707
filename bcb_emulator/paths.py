"""Checks of the folders and files a command reads or writes, before it starts its work.

A folder that cannot be made (a file stands at its place or above it, or its parent does not
allow writing) or a file that is not there fails with a `ValueError` naming the argument, the
path at fault and what was expected, instead of an `OSError` from deep inside a write after
part of the work is done.

Example:

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "notes.txt").write_text("x")
1
>>> check_output_dir(root / "run", "out_dir")
>>> check_output_dir(root / "notes.txt" / "run", "out_dir")
Traceback (most recent call last):
...
ValueError: `out_dir` must be a folder (or a path where one can be created), but ...
"""

from __future__ import annotations

import os
import pathlib


def check_output_dir(path: str | os.PathLike, name: str) -> None:
    """Raises `ValueError` unless `path` is a writable folder or one that can be created.

    Args:
        path: the folder a command writes into.
        name: the argument it came from (``out_dir``, ``--out``), for the message.
    """
    path = pathlib.Path(path)
    for existing in (path, *path.parents):
        if not existing.exists():
            continue
        if not existing.is_dir():
            raise ValueError(
                f"`{name}` must be a folder (or a path where one can be created), but "
                f"{existing} is a file. Received: {name}={str(path)!r}"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(
                f"`{name}` must be a folder this user can write, but {existing} does not "
                f"allow writing. Received: {name}={str(path)!r}"
            )
        return


def check_input_dir(path: str | os.PathLike, name: str, holds: str) -> pathlib.Path:
    """Returns `path` as a `Path` if it is an existing folder, else raises `ValueError`.

    Args:
        path: the folder a command reads.
        name: the argument it came from, for the message.
        holds: what the folder should hold (``"model.keras and train_config.json"``).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(
            f"`{name}` must be a folder holding {holds}, but {path} does not exist. "
            f"Received: {name}={str(path)!r}"
        )
    if not path.is_dir():
        raise ValueError(
            f"`{name}` must be a folder holding {holds}, but {path} is a file. "
            f"Received: {name}={str(path)!r}"
        )
    return path


def remove_partials(folder: str | os.PathLike, pattern: str) -> list[pathlib.Path]:
    """Removes what killed processes left half written in `folder`; returns what it removed.

    Outputs are written under a temporary name holding the writer's process id, then renamed
    into place; a SIGKILL between the two leaves the temporary behind. Removed: the entries of
    `folder` whose name matches `pattern` (a regular expression with a group ``pid``) and
    whose process is no longer running, so that a concurrent writer's partial stays.

    Args:
        folder: the folder the outputs go to (nothing is done if it does not exist).
        pattern: matched against whole names, e.g. ``r"\\.tmp-export-\\d+-(?P<pid>\\d+)"``.
    """
    import re
    import shutil

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    regex = re.compile(pattern)
    removed = []
    for entry in sorted(folder.iterdir()):
        match = regex.fullmatch(entry.name)
        if match is None or _running(int(match.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    """Whether process `pid` exists on this machine (this process included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
