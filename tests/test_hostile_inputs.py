"""Hostile input to training, model loading, evaluation, export, prediction, tuning and the demo.

Each case gives one command one bad input and checks four things: the exit status is 2; the
message names what is wrong (the file, field or argument) and what was expected; no traceback
is printed; nothing partial or wrong is left behind (no output folder, no version, no
overwritten config). The commands run through the console script's `main` in this process;
two run as subprocesses to see the real console. Bad dataset inputs (reader, builder) are in
``test_hostile_build.py``; bad field types and bounds of the config files in
``test_model.py::test_train_config_files_are_checked_field_by_field``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import zipfile

import keras
import pytest
from serving_helpers import tiny_export, tiny_model_dir
from tiny import tiny_train_config

from bcb_emulator.cli import main
from bcb_emulator.config import ModelConfig, Tier, TrainConfig
from bcb_emulator.models import load_emulator

DUMMY_DATA = pathlib.Path(__file__).resolve().parents[1] / "tfds_builders/modele_bcb/dummy_data"
ROOT_USER = os.geteuid() == 0  # root writes into read-only folders: no permission case then


def _refused(capsys, args: list, *patterns: str) -> str:
    """Runs ``bcb-emulator ARGS``; checks exit status 2, a one-line error matching every
    pattern (what is wrong, what was expected) and no traceback; returns the message."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"bcb-emulator {args[0]}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"bcb-emulator {args[0]}: error: "), err
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def _tree(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes: to check that a refusal changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture()
def a_file(tmp_path) -> pathlib.Path:
    """A plain file where a command is told to make a folder."""
    path = tmp_path / "notes.txt"
    path.write_text("not a folder\n")
    return path


@pytest.fixture(scope="module")
def model_dir(tiny_dataset, tmp_path_factory) -> pathlib.Path:
    """An (untrained) tiny emulator saved as training saves it: model.keras and its config."""
    return tiny_model_dir(tiny_dataset, tmp_path_factory.mktemp("hostile") / "run")


# --- train: the config file, the folders, the data ------------------------------------------


def _train_file(dataset, tmp_path, name="run", **overrides) -> pathlib.Path:
    """A valid one-tier config into ``tmp_path/name`` (fields as dicts, edited by `overrides`),
    written to ``tmp_path/name.json``."""
    data = tiny_train_config(dataset, tmp_path / name, per_level_metrics=False).to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "text, patterns",
    [
        ("", [r"bad\.json is not valid JSON", "expected a JSON object of `TrainConfig`"]),
        ('{"data_dir": "d", ', [r"bad\.json is not valid JSON", "line 1 column"]),
        ("[1, 2]", [r"bad\.json is invalid", "must be a JSON object", "Received: list"]),
        (None, [r"bad\.json is a folder", "expected a JSON file"]),  # a folder, not a file
    ],
    ids=["empty", "truncated", "a_list", "a_folder"],
)
def test_train_refuses_a_config_file_that_is_not_a_json_object(tmp_path, capsys, text, patterns):
    path = tmp_path / "bad.json"
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    _refused(capsys, ["train", "--config", path], *patterns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_train_refuses_a_missing_config_file(tmp_path, capsys):
    _refused(capsys, ["train", "--config", tmp_path / "nope.json"], r"nope\.json does not exist")


def test_train_refuses_an_out_dir_under_a_file(tiny_dataset, tmp_path, a_file, capsys):
    path = _train_file(tiny_dataset, tmp_path, out_dir=str(a_file / "run"))
    _refused(
        capsys, ["train", "--config", path], "`out_dir` must be a folder", f"{a_file} is a file"
    )
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.skipif(ROOT_USER, reason="root may write into a read-only folder")
def test_train_refuses_an_out_dir_it_cannot_write(tiny_dataset, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    path = _train_file(tiny_dataset, tmp_path, out_dir=str(locked / "run"))
    _refused(capsys, ["train", "--config", path], "`out_dir` must be a folder this user can write")
    assert not list(locked.iterdir())


@pytest.mark.parametrize(
    "overrides, patterns",
    [
        (  # no built dataset there
            {"data_dir": "{tmp}/no_data"},
            [r"No built dataset modele_bcb/tiny_l3 in .*no_data", "expected .*dataset_info.json"],
        ),
        (  # a builder config never built
            {"builder_config": "coarse_l20"},
            [r"No built dataset modele_bcb/coarse_l20", "Build it with"],
        ),
        (  # a split the dataset does not have
            {"tiers": [{"name": "only", "train_split": "pi_test", "val_split": "validation"}]},
            ["Tier 'only'", "`split` must be one of .*'pi_train'", "Received: split='pi_test'"],
        ),
        (  # a window longer than a split (8 steps)
            {"model": {"time_steps": 9}},
            ["Tier 'only'", "`window` must not exceed the 8 steps", "Received: window=9"],
        ),
        (  # a model of other levels than the dataset's
            {"model": {"levels": 5}},
            ["Tier 'only'", r"must have per-example shapes .*'y': \(6, 8, 5\)", r"\(6, 8, 3\)"],
        ),
    ],
    ids=["no_dataset", "builder_config_not_built", "unknown_split", "window_too_long", "levels"],
)
def test_train_refuses_a_config_its_data_cannot_train_before_writing(
    tiny_dataset, tmp_path, capsys, overrides, patterns
):
    overrides = json.loads(json.dumps(overrides).replace("{tmp}", str(tmp_path)))
    path = _train_file(tiny_dataset, tmp_path, **overrides)
    _refused(capsys, ["train", "--config", path], *patterns)
    assert not (tmp_path / "run").exists()  # no config saved that would lock the folder


@pytest.fixture()
def older_run(tiny_dataset, model_dir, tmp_path):
    """A finished one-tier run as training leaves it (its config, the tier's model and the
    final one; the untrained tiny emulator stands in for trained weights) and its config file."""
    path = _train_file(tiny_dataset, tmp_path, name="older")
    run = tmp_path / "older"
    (run / "only").mkdir(parents=True)
    TrainConfig.load(path).save(run / "train_config.json")
    for name in ("model.keras", "only/model.keras"):
        (run / name).write_bytes((model_dir / "model.keras").read_bytes())
    return run, path


def test_train_leaves_an_older_run_as_it_was_when_refusing_another_config(
    older_run, tiny_dataset, tmp_path, capsys
):
    run, _ = older_run
    before = _tree(run)
    other = _train_file(tiny_dataset, tmp_path, out_dir=str(run), batch_size=2, seed=3)
    _refused(
        capsys,
        ["train", "--config", other],
        "holds a run of another configuration",
        r"fields that differ: batch_size, seed",
        "Use another `out_dir`",
    )
    assert _tree(run) == before  # train_config.json, model.keras, history: all as they were


def test_train_names_a_damaged_model_of_a_finished_tier(older_run, capsys):
    """A finished tier whose model.keras was damaged since (a disk fault, a bad copy)."""
    run, path = older_run
    (run / "only" / "model.keras").write_bytes(b"\0" * 100)
    (run / "model.keras").unlink()
    _refused(
        capsys,
        ["train", "--config", path],
        r"only/model\.keras is not a zip archive \(100 bytes",
        "expected a `.keras` model",
    )
    assert not (run / "model.keras").exists()


# --- model files ------------------------------------------------------------------------------


def _damaged(good: pathlib.Path, folder: pathlib.Path, kind: str) -> pathlib.Path:
    """A `.keras` file damaged as `kind` says, made from the good one at `good`."""
    path = folder / f"{kind}.keras"
    data = good.read_bytes()
    if kind == "garbage":
        path.write_bytes(b"PK but not really a zip archive")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "empty_zip":
        zipfile.ZipFile(path, "w").close()
    elif kind == "a_folder":
        path.mkdir()
    elif kind == "not_an_emulator":
        other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="dense")
        other.save(path)
    else:  # a member replaced: config.json not JSON, naming an unknown class, weights cut
        member, content = {
            "config_not_json": ("config.json", b"{not json"),
            "unknown_class": ("config.json", json.dumps({"class_name": "Nope", "config": {}})),
            "weights_cut": ("model.weights.h5", None),
        }[kind]
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for name in src.namelist():
                body = src.read(name)
                if name == member:
                    body = content if content is not None else body[:100]
                dst.writestr(name, body)
    return path


MODEL_FILE_CASES = {
    "garbage": [r"is not a zip archive \(31 bytes", "expected a `.keras` model"],
    "truncated": [r"is not a zip archive \(\d+ bytes: empty, truncated", "expected a `.keras`"],
    "empty": [r"is not a zip archive \(0 bytes", "expected a `.keras` model"],
    "empty_zip": [r"lacks \['config.json', 'metadata.json', 'model.weights.h5'\]"],
    "a_folder": ["is a folder; expected a `.keras` model"],
    "config_not_json": ["could not be loaded as an emulator: JSONDecodeError", "Expected a"],
    "unknown_class": ["could not be loaded as an emulator: TypeError: Could not locate class"],
    "weights_cut": ["could not be loaded as an emulator: OSError", "truncated file"],
    "not_an_emulator": ["not an emulator: its inputs must be a dict named 'x2d'", "Sequential"],
}


@pytest.mark.parametrize("kind", list(MODEL_FILE_CASES))
def test_load_emulator_names_the_file_and_what_is_wrong_with_it(model_dir, tmp_path, kind):
    path = _damaged(model_dir / "model.keras", tmp_path, kind)
    with pytest.raises(ValueError) as info:
        load_emulator(path)
    message = str(info.value)
    assert str(path) in message and "File not found" not in message
    for pattern in MODEL_FILE_CASES[kind]:
        assert re.search(pattern, message), (pattern, message)


def test_load_emulator_says_a_missing_file_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.keras does not exist; expected"):
        load_emulator(tmp_path / "model.keras")


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_damaged_model_file_stops_evaluate_and_export_before_any_output(
    model_dir, tmp_path, capsys, command
):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.json").write_bytes((model_dir / "train_config.json").read_bytes())
    good = (model_dir / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(good[: len(good) // 3])  # an interrupted copy
    out = tmp_path / "out"
    args = {
        "evaluate": ["evaluate", "--model", run, "--split", "test", "--out", out, "--quiet"],
        "export": ["export", "--model", run, "--name", "m", "--out", out],
    }[command]
    _refused(capsys, args, r"run/model\.keras is not a zip archive", "truncated")
    assert not out.exists()


# --- evaluate, export, predict: folders and arguments -----------------------------------------


def test_evaluate_refuses_an_out_under_a_file_before_evaluating(
    model_dir, a_file, capsys, monkeypatch
):
    from bcb_emulator import evaluation

    def never(*args, **kwargs):
        raise AssertionError("evaluated although --out cannot be written")

    monkeypatch.setattr(evaluation, "run_evaluation", never)
    _refused(
        capsys,
        ["evaluate", "--model", model_dir, "--split", "test", "--out", a_file / "report"],
        "`--out` must be a folder",
        f"{a_file} is a file",
    )


def test_evaluate_refuses_a_missing_model_folder(tmp_path, capsys):
    out = tmp_path / "report"
    args = ["evaluate", "--model", tmp_path / "no_run", "--split", "test", "--out", out]
    _refused(capsys, args, r"no_run/model\.keras does not exist", "take the out_dir of")
    assert not out.exists()


def test_evaluate_refuses_a_batch_size_below_one(model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["evaluate", "--model", model_dir, "--split", "test", "--out", out, "--batch-size", "0"]
    _refused(capsys, args, "`batch_size` must be an integer >= 1", "Received: batch_size=0")
    assert not out.exists()


def test_export_refuses_an_out_under_a_file(model_dir, a_file, capsys):
    args = ["export", "--model", model_dir, "--name", "m", "--out", a_file / "saved_models"]
    _refused(capsys, args, "`--out` must be a folder", f"{a_file} is a file")


def test_export_refuses_a_missing_model_folder(tmp_path, capsys):
    out = tmp_path / "saved_models"
    args = ["export", "--model", tmp_path / "no_run", "--name", "m", "--out", out]
    _refused(capsys, args, "`model` must be a training out_dir holding model.keras", "missing")
    assert not out.exists()


def test_export_refuses_a_version_below_one(model_dir, tmp_path, capsys):
    out = tmp_path / "saved_models"
    args = ["export", "--model", model_dir, "--name", "m", "--out", out, "--version", "0"]
    _refused(capsys, args, "`version` must be an integer >= 1", "Received: version=0")
    assert not (out / "m").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"], ids=["not_json", "a_list"])
def test_export_refuses_a_metrics_file_that_is_not_a_report(model_dir, tmp_path, capsys, content):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(content)
    out = tmp_path / "saved_models"
    args = ["export", "--model", model_dir, "--name", "m", "--out", out, "--metrics", metrics]
    _refused(
        capsys, args, r"`metrics`.*metrics\.json", "the metrics.json of `bcb-emulator evaluate`"
    )
    assert not (out / "m").exists()  # refused before a version folder was begun


@pytest.fixture(scope="module")
def version_dir(tiny_dataset, tmp_path_factory):
    """The tiny exported model (a version folder), shared with the serving tests."""
    return tiny_export(tiny_dataset, tmp_path_factory)


def _predict(model, input_dir, out, start="2010-01-02", end="2010-01-02") -> list:
    return ["predict", "--model", model, "--input", input_dir, "--start", start, "--end", end,
            "--out", out, "--no-progress"]  # fmt: skip


def test_predict_refuses_a_missing_input_folder(tmp_path, capsys):
    out = tmp_path / "out"
    args = _predict(tmp_path / "export", tmp_path / "modele_run", out)
    _refused(capsys, args, "`--input` must be a folder holding the daily ModelE files",
             r"modele_run does not exist")  # fmt: skip
    assert not out.exists()


def test_predict_refuses_an_input_that_is_a_file(tmp_path, a_file, capsys):
    out = tmp_path / "out"
    _refused(capsys, _predict(tmp_path, a_file, out), "`--input` must be a folder",
             f"{a_file} is a file")  # fmt: skip
    assert not out.exists()


def test_predict_refuses_an_out_under_a_file(tmp_path, a_file, capsys):
    _refused(capsys, _predict(tmp_path, DUMMY_DATA, a_file / "out"), "`--out` must be a folder",
             f"{a_file} is a file")  # fmt: skip


def test_predict_refuses_a_day_not_in_the_calendar(version_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(capsys, _predict(version_dir, DUMMY_DATA, out, start="2010-02-30"),
             "`start` must be a day YYYY-MM-DD of the noleap calendar",
             "Received: start='2010-02-30'")  # fmt: skip
    assert not out.exists()


# --- tune and demo ------------------------------------------------------------------------------


def _tune_file(tmp_path, out_dir) -> pathlib.Path:
    from tuning.config import TuneConfig

    train = TrainConfig(
        "data", "tiny_l3", str(tmp_path / "best"), model=ModelConfig(height=6, width=8, levels=3),
        tiers=(Tier("only", "train", "validation", epochs=1),),
    )  # fmt: skip
    path = tmp_path / "tune.json"
    TuneConfig(train=train, out_dir=str(out_dir), tuner="random", max_trials=1).save(path)
    return path


def test_tune_refuses_an_out_dir_under_a_file(tmp_path, a_file, capsys):
    path = _tune_file(tmp_path, a_file / "tune")
    _refused(capsys, ["tune", "--config", path], "`out_dir` must be a folder",
             f"{a_file} is a file")  # fmt: skip


def test_tune_refuses_a_config_file_that_is_not_json(tmp_path, capsys):
    path = tmp_path / "tune.json"
    path.write_text('{"train": ')
    _refused(capsys, ["tune", "--config", path], r"tune\.json is not valid JSON",
             "expected a JSON object of `TuneConfig` fields")  # fmt: skip


def test_tune_demo_refuses_a_folder_without_the_demo_dataset(tmp_path, capsys):
    _refused(capsys, ["tune", "--demo", tmp_path], "No built dataset modele_bcb/demo_l20",
             "Build it with `bcb-emulator build-dataset`")  # fmt: skip
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize("flag", ["--out", "--saved-models"])
def test_demo_refuses_a_folder_under_a_file(tmp_path, a_file, capsys, monkeypatch, flag):
    from bcb_emulator import demo

    def never(*args, **kwargs):
        raise AssertionError("the demo started although a folder cannot be made")

    monkeypatch.setattr(demo, "run_demo", never)
    args = {"--out": tmp_path / "demo", "--saved-models": tmp_path / "saved_models"}
    args[flag] = a_file / "sub"
    _refused(capsys, ["demo", *(x for kv in args.items() for x in kv)],
             f"`{flag}` must be a folder", f"{a_file} is a file")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- the real console: no traceback on the terminal -------------------------------------------


def test_the_console_prints_one_error_line_not_a_traceback(model_dir, tmp_path):
    """`bcb-emulator` as a user runs it, on a damaged model (the issue's "File not found"
    traceback for a file that exists): one line on the terminal, exit status 2."""
    damaged = tmp_path / "run"
    damaged.mkdir()
    (damaged / "train_config.json").write_bytes((model_dir / "train_config.json").read_bytes())
    (damaged / "model.keras").write_bytes(b"")
    args = ["evaluate", "--model", damaged, "--split", "test", "--out", tmp_path / "r"]
    out = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "bcb-emulator"), *map(str, args)],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"bcb-emulator evaluate: error: {damaged}/model.keras is not a zip archive (0 bytes: "
        "empty, truncated by an interrupted copy or save, or another format); expected a "
        "`.keras` model saved by `bcb-emulator train` (a zip archive of config.json, "
        f"metadata.json, model.weights.h5). Received: {damaged}/model.keras"
    )
    assert not (tmp_path / "r").exists()
