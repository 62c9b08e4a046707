"""`bcb-emulator build-dataset` prints the splits and sizes; `tfds build` works on the folder."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bcb_emulator.cli import build_dataset as build_dataset_cli
from bcb_emulator.data import BuiltDataset, build_dataset
from tfds_builders.modele_bcb import modele_bcb_dataset_builder as mb

ROOT = Path(__file__).parents[1]
DUMMY = ROOT / "tfds_builders" / "modele_bcb" / "dummy_data"


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    build_dataset_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_build_dataset_command_prints_splits_and_sizes(tmp_path, capsys):
    argv = ["build-dataset", "--input", str(DUMMY), "--data-dir", str(tmp_path)]
    argv += ["--config", "tiny_l3", "--split", "train=2010-01-01:2010-01-02"]
    argv += ["--split", "validation=2010-01-03:2010-01-03", "--name", "demo"]
    assert _main(argv) == 0
    lines = capsys.readouterr().out.splitlines()  # TFDS prints its own progress first
    header = next(i for i, line in enumerate(lines) if line.startswith("modele_bcb/demo in "))
    assert [line.split() for line in lines[header + 1 :]] == [
        ["train", "8", "steps"],
        ["validation", "4", "steps"],
    ]
    assert BuiltDataset.open(tmp_path, "demo").spec.split("validation").start == "2010-01-03"


def test_bad_split_argument_is_rejected():
    with pytest.raises(SystemExit):
        _main(["build-dataset", "--input", "x", "--data-dir", "y", "--split", "train"])


def test_custom_splits_need_their_own_name(tmp_path):
    with pytest.raises(ValueError, match="`name` must differ from the registered configs"):
        build_dataset(
            DUMMY, tmp_path, "tiny_l3", {"train": ("2010-01-01", "2010-01-02")}, name="tiny_l3"
        )
    with pytest.raises(ValueError, match="`config_name` must be one of"):
        build_dataset(DUMMY, tmp_path, "huge_l99")


@pytest.mark.skipif(
    shutil.which("tfds", path=str(Path(sys.executable).parent)) is None, reason="no tfds CLI"
)
def test_tfds_build_cli_on_the_builder_folder(tmp_path):
    tfds_cli = Path(sys.executable).parent / "tfds"
    cmd = [str(tfds_cli), "build", str(ROOT / "tfds_builders" / "modele_bcb")]
    cmd += ["--manual_dir", str(DUMMY), "--data_dir", str(tmp_path), "--config", "tiny_l3"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert BuiltDataset.open(tmp_path, "tiny_l3").split_sizes == {
        "pi_train": 4,
        "train": 8,
        "validation": 4,
        "test": 4,
        "ood_fire2021": 4,
    }


def test_cli_with_the_configs_own_ranges_succeeds_without_tfds_noise(tmp_path):
    """`--split` ranges equal to the config's build that config (exit 0, its sizes printed);
    neither TFDS's download lines nor TensorFlow's CUDA/oneDNN start-up lines reach the user."""
    cmd = [str(Path(sys.executable).parent / "bcb-emulator"), "build-dataset"]
    cmd += ["--input", str(DUMMY), "--data-dir", str(tmp_path), "--config", "tiny_l3"]
    for split in mb.Builder.builder_configs["tiny_l3"].spec.splits:
        cmd += ["--split", f"{split.name}={split.start}:{split.end}"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1] == f"modele_bcb/tiny_l3 in {tmp_path / 'modele_bcb' / 'tiny_l3' / '1.1.0'}"
    assert [line.split()[:2] for line in lines[2:]] == [
        ["pi_train", "4"], ["train", "8"], ["validation", "4"], ["test", "4"], ["ood_fire2021", "4"]
    ]  # fmt: skip
    everything = result.stdout + result.stderr
    for noise in ("Downloading and preparing", "Unknown size", "cuda", "oneDNN", "absl"):
        assert noise not in everything, noise


def test_a_split_name_given_twice_is_refused(tmp_path, capsys):
    from bcb_emulator.cli import main

    argv = ["build-dataset", "--input", str(DUMMY), "--data-dir", str(tmp_path)]
    argv += ["--config", "tiny_l3", "--split", "train=2010-01-01:2010-01-01"]
    argv += ["--split", "train=2010-01-02:2010-01-02", "--name", "twice"]
    assert main(argv) == 2
    assert "`--split` names must be distinct: ['train']" in capsys.readouterr().err
    assert not (tmp_path / "modele_bcb").exists()
