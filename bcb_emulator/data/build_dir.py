"""The folders a dataset build reads and writes: checked, locked, cleaned, swapped atomically.

`bcb_emulator.data.build_dataset` goes through here so that a build never leaves a half-made
or lost dataset behind (``docs/reliability.md``):

- :func:`check_input_dir` and :func:`prepare_config_dir`: a missing, empty or non-folder
  ``--input``, a ``--data-dir`` under a file or not writable fail with a ``ValueError`` that
  says which path and what was expected, before anything is written;
- :func:`build_lock`: one build of a dataset at a time (an ``fcntl`` lock beside it, released
  by the kernel when the process dies, even by SIGKILL);
- :func:`remove_leftovers`: under that lock, what killed builds of the same dataset left in its
  folder (TFDS's ``incomplete.*``, our ``building.*``) is removed, and a dataset moved aside by
  an ``--overwrite`` killed mid-swap is put back;
- :func:`swap_in`: an ``--overwrite`` builds into ``building.<pid>/`` and only a complete new
  dataset replaces the old one, by two renames on the same file system.

Layout of one dataset's folder, ``data_dir/modele_bcb/<name>/``::

    1.1.0/                      the dataset (TFDS version folder)
    incomplete.XXXXXX_1.1.0/    TFDS, while it writes a new version (renamed to 1.1.0/)
    building.<pid>/             an --overwrite's data_dir while it builds aside
    1.1.0.old.<pid>/            the previous dataset during the swap (deleted right after)
    .build.lock                 held while a build runs
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Prefix of TFDS's temporary version folders (``tensorflow_datasets.core.constants``).
TFDS_INCOMPLETE_PREFIX = "incomplete."
#: Prefix of the ``data_dir`` an ``--overwrite`` builds into, beside the dataset it replaces.
STAGING_PREFIX = "building."
#: Infix of the previous dataset while a swap replaces it.
OLD_INFIX = ".old."
LOCK_NAME = ".build.lock"


def check_input_dir(input_dir: str | os.PathLike, pattern: str) -> Path:
    """`input_dir` as a `Path`; raises `ValueError` unless it is a readable folder holding at
    least one file matching `pattern` (the daily files)."""
    path = Path(input_dir)
    expected = f"a folder of ModelE daily files ({pattern}, e.g. 20100101.aijh1E3oma.nc)"
    if not path.exists():
        problem = "no such file or folder"
    elif not path.is_dir():
        problem = "a file, not a folder"
    else:
        try:
            entries = sorted(p.name for p in path.iterdir())
        except OSError as err:
            problem = f"cannot be listed: {err.strerror}"
        else:
            if not entries:
                problem = "an empty folder"
            elif not any(path.glob(pattern)):
                problem = f"holds no such file, only {entries[:5]}" + (
                    f" and {len(entries) - 5} more" if len(entries) > 5 else ""
                )
            else:
                return path
    raise ValueError(f"`input_dir` (--input) must be {expected}. Received: {path} ({problem})")


def prepare_config_dir(data_dir: str | os.PathLike, config_dir: Path) -> list[Path]:
    """Creates `config_dir` (inside `data_dir`) and checks that files can be written there;
    raises `ValueError` naming the path if `data_dir` lies under a file or is not writable.
    Returns the folders it created, deepest first (see :func:`remove_created`)."""
    data_dir = Path(data_dir)
    made = [p for p in (config_dir, *config_dir.parents) if not p.exists()]
    for parent in (data_dir, *data_dir.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"`data_dir` (--data-dir) must be a folder or a path that can be created "
                    f"as one. Received: {data_dir} ({parent} is a file)"
                )
            break
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=config_dir, prefix=".write_test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        remove_created(made)
        raise ValueError(
            f"`data_dir` (--data-dir) must be a folder this user can write to. Received: "
            f"{data_dir} (writing in {config_dir} failed: {err.strerror or err})"
        ) from None
    return made


def remove_created(folders: list[Path]) -> None:
    """After a failed build: removes those of `folders` (the ones it created, deepest first)
    that hold nothing but TFDS's bookkeeping (empty folders such as ``downloads/extracted``,
    a ``.config/metadata.json``), so that it leaves no trace."""
    for folder in folders:
        if not folder.is_dir():
            continue
        files = [p for p in folder.rglob("*") if not p.is_dir()]
        if any(p.parent.name != ".config" or p.name != "metadata.json" for p in files):
            return  # something else is there: keep it and its parents
        shutil.rmtree(folder)


@contextlib.contextmanager
def build_lock(config_dir: Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on `config_dir` for the block; raises `ValueError` at once if
    another process holds it. The lock file is removed on exit."""
    path = config_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(
                f"Another build of {what} is running in {config_dir.parent.parent} (it holds "
                f"{path}). Wait for it to finish, or stop it and rerun."
            ) from None
        try:  # the holder before us may have removed the file after we opened it: retry
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def remove_leftovers(config_dir: Path, version: str) -> list[Path]:
    """Cleans `config_dir` of what killed builds left; call it under :func:`build_lock`.

    Removes TFDS's ``incomplete.*`` and our ``building.*`` folders; puts a dataset moved aside
    by a swap back if the new one never arrived, else deletes the old one. Returns the paths
    removed (and says on stderr what it removed or restored).
    """
    removed = []
    target = config_dir / version
    for old in sorted(config_dir.glob(f"{version}{OLD_INFIX}*")):
        if not target.exists():
            os.rename(old, target)
            print(f"Restored {target} (an --overwrite was stopped mid-swap)", file=sys.stderr)
        else:
            shutil.rmtree(old)
            removed.append(old)
    for prefix in (TFDS_INCOMPLETE_PREFIX, STAGING_PREFIX):
        for path in sorted(config_dir.glob(f"{prefix}*")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    if removed:
        print(
            f"Removed what an interrupted build left in {config_dir}: {[p.name for p in removed]}",
            file=sys.stderr,
        )
    return removed


def staging_dir(config_dir: Path) -> Path:
    """The ``data_dir`` an ``--overwrite`` of this process builds into."""
    return config_dir / f"{STAGING_PREFIX}{os.getpid()}"


def swap_in(new: Path, target: Path) -> None:
    """Replaces the dataset folder `target` by the complete `new` one (same file system).

    The old folder is renamed aside, the new one renamed into place, then the old deleted:
    a kill between the renames leaves the old one under ``<version>.old.<pid>``, which
    :func:`remove_leftovers` puts back.
    """
    old = move_aside(target)
    os.rename(new, target)
    shutil.rmtree(old)


def move_aside(target: Path) -> Path:
    """Renames the dataset folder `target` to ``<version>.old.<pid>``; returns the new path."""
    old = target.with_name(f"{target.name}{OLD_INFIX}{os.getpid()}")
    os.rename(target, old)
    return old
