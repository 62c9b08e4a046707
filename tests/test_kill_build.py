"""``bcb-emulator build-dataset`` SIGKILLed and rerun: the rerun removes what the killed build
left and ends byte for byte as an uninterrupted build; a killed ``--overwrite`` leaves the old
dataset as it was, usable. Identical builds in two processes write identical TFRecords.

The kill is real (``tests/kill_at.py``: the subprocess sends itself SIGKILL at the `N`-th call
of a function, so no clean-up code runs); each test checks the process died there. The
uninterrupted build the results are compared with runs in this process. The default run kills
one ``--overwrite`` while it writes records; the other kill points are ``slow``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from bcb_emulator.data import BuiltDataset, build_dataset, synthetic
from bcb_emulator.data.spec import TINY_GRID

KILL_AT = pathlib.Path(__file__).with_name("kill_at.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
DAYS = [58400, 58401, 58402]  # 2010-01-01 .. 2010-01-03
SPLITS = {"train": ("2010-01-01", "2010-01-02"), "test": ("2010-01-03", "2010-01-03")}
NAME = "killed"
#: Kill points, ``MODULE:FUNCTION:N:WHEN`` (``kill_at.py``).
WHILE_CHECKING = "bcb_emulator.data.reader:read_day:2:before"  # the values and statistics pass
WHILE_WRITING = "bcb_emulator.data.reader:day_examples:3:before"  # `train` written, `test` not
MID_SWAP = "bcb_emulator.data.build_dir:move_aside:1:after"  # old moved aside, new not in


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("input")
    synthetic.write_days(out, DAYS, TINY_GRID, n_levels=4, steps_per_day=4, seed=5)
    return out


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory) -> dict[str, bytes]:
    """The files of the dataset built in this process, without a kill."""
    data_dir = tmp_path_factory.mktemp("uninterrupted")
    build_dataset(files, data_dir, "tiny_l3", SPLITS, name=NAME)
    return _snapshot(data_dir)


def _argv(files: pathlib.Path, data_dir: pathlib.Path, *extra: str) -> list[str]:
    argv = ["build-dataset", "--input", str(files), "--data-dir", str(data_dir)]
    argv += ["--config", "tiny_l3", "--name", NAME]
    for split, (start, end) in SPLITS.items():
        argv += ["--split", f"{split}={start}:{end}"]
    return argv + list(extra)


def _killed(argv: list[str], spec: str) -> None:
    """Runs ``bcb-emulator ARGV`` killed as `spec` says; checks that it died there."""
    out = subprocess.run(
        [sys.executable, str(KILL_AT), spec, "--", *argv],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL, (spec, out.returncode, out.stderr[-3000:])


def _snapshot(data_dir: pathlib.Path) -> dict[str, bytes]:
    """Every file of the dataset (records, statistics, metadata), by relative path."""
    root = data_dir / "modele_bcb" / NAME / "1.1.0"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _leftovers(data_dir: pathlib.Path) -> list[str]:
    root = data_dir / "modele_bcb" / NAME
    return sorted(p.name for p in root.iterdir() if p.name != "1.1.0")


def test_identical_builds_in_two_processes_write_identical_records(files, uninterrupted, tmp_path):
    """Without sorted feature keys each process wrote its records' features in another order."""
    command = [str(pathlib.Path(sys.executable).parent / "bcb-emulator"), *_argv(files, tmp_path)]
    out = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    snapshot = _snapshot(tmp_path)
    assert [k for k in snapshot if "tfrecord" in k]  # records are compared, not only metadata
    assert snapshot == uninterrupted


def test_overwrite_killed_while_writing_keeps_the_old_dataset_and_rerun_completes(
    files, uninterrupted, tmp_path
):
    build_dataset(files, tmp_path, "tiny_l3", {"train": SPLITS["train"]}, name=NAME)
    old = _snapshot(tmp_path)  # `train` only: other records and spec than the new one
    _killed(_argv(files, tmp_path, "--overwrite"), WHILE_WRITING)
    assert _snapshot(tmp_path) == old
    assert BuiltDataset.open(tmp_path, NAME).split_sizes == {"train": 8}
    assert any(n.startswith("building.") for n in _leftovers(tmp_path))  # the new one, aside
    build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME, overwrite=True)
    assert _snapshot(tmp_path) == uninterrupted
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("kill", [WHILE_CHECKING, WHILE_WRITING])
def test_build_killed_and_rerun_equals_an_uninterrupted_build(files, uninterrupted, tmp_path, kill):
    _killed(_argv(files, tmp_path), kill)
    with pytest.raises(ValueError, match="No built dataset"):
        BuiltDataset.open(tmp_path, NAME)
    assert any(name.startswith("incomplete.") for name in _leftovers(tmp_path))
    build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME)
    assert _snapshot(tmp_path) == uninterrupted
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_overwrite_killed_mid_swap_is_put_back_by_the_rerun(files, uninterrupted, tmp_path):
    build_dataset(files, tmp_path, "tiny_l3", {"train": SPLITS["train"]}, name=NAME)
    old = _snapshot(tmp_path)
    _killed(_argv(files, tmp_path, "--overwrite"), MID_SWAP)
    assert not (tmp_path / "modele_bcb" / NAME / "1.1.0").exists()
    with pytest.raises(ValueError, match="rerun `bcb-emulator build-dataset` to put it back"):
        BuiltDataset.open(tmp_path, NAME)
    with pytest.raises(ValueError, match="built with another layout"):  # put back, then refused
        build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME)
    assert _snapshot(tmp_path) == old
    build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME, overwrite=True)
    assert _snapshot(tmp_path) == uninterrupted
    assert _leftovers(tmp_path) == []
