"""``bcb-emulator predict``: ModelE files in, emulated taijlh1 files out, read back by the
package's reader and builder."""

from __future__ import annotations

import os
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from advection_reference import advected_memory
from serving_helpers import ADVECTED_DAYS, MEMORY_DAYS, TIME_STEPS, tiny_export

from bcb_emulator import export, predict, variables
from bcb_emulator.cli import main
from bcb_emulator.data import build_dataset, reader
from bcb_emulator.data.calendar import parse_date, yyyymmdd

DUMMY_DATA = Path(__file__).resolve().parents[1] / "tfds_builders" / "modele_bcb" / "dummy_data"
DAYS = ("2010-01-02", "2010-01-03", "2010-01-04")


def _out_file(folder: Path, date: str) -> Path:
    return folder / variables.filename(yyyymmdd(parse_date(date)), "taijlh1")


LEVELS = 3  # L of tiny_l3; the dummy files hold 4 levels


def _bcb(path: Path) -> np.ndarray:
    """``BCB`` of the lowest L levels, `(S, L, H, W)`."""
    with netCDF4.Dataset(path) as ds:
        return np.asarray(ds["BCB"][:, :LEVELS])


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    return export.ExportedModel.open(tiny_export(tiny_dataset, tmp_path_factory))


@pytest.fixture(scope="module")
def predicted(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("predicted")
    summary = predict.predict_files(
        exported.path, DUMMY_DATA, DAYS[0], DAYS[-1], out, progress=False
    )
    return out, summary


@pytest.fixture(scope="module")
def reference(exported, tiny_dataset):
    """``serving_default`` on every window ending in 2010-01-02..04 (context from 01-01),
    built here from the reader's frames: ``(12, H, W, L)``."""
    spec = exported.spec
    days = [reader.read_day(DUMMY_DATA, parse_date(f"2010-01-0{d}"), spec) for d in range(1, 5)]
    frames = {k: np.concatenate([getattr(d, k) for d in days]) for k in ("x2d", "x3d")}
    t = TIME_STEPS
    ends = range(4, 16)  # the steps of 01-02 .. 01-04
    windows = {k: np.stack([v[e - t + 1 : e + 1] for e in ends]) for k, v in frames.items()}
    return exported.load().signatures["serving_default"](**windows)["bcb"].numpy()


def test_predictions_are_the_windowed_model_on_each_step(predicted, reference, exported):
    out, summary = predicted
    assert [p.name for p in summary.written] == [
        "20100102.taijlh1E3oma.nc", "20100103.taijlh1E3oma.nc", "20100104.taijlh1E3oma.nc",
    ]  # fmt: skip
    assert summary.skipped == [] and summary.padded_steps == 0
    written = np.concatenate([_bcb(p) for p in summary.written])  # (12, L, H, W)
    written = np.transpose(written, (0, 2, 3, 1))
    assert export.relative_error(written, reference, exported.stats.log_offset) < 1e-5


def test_output_files_keep_the_inputs_layout(predicted):
    out, _ = predicted
    source = DUMMY_DATA / "20100103.taijlh1E3oma.nc"
    with netCDF4.Dataset(source) as src, netCDF4.Dataset(_out_file(out, DAYS[1])) as dst:
        assert {k: len(v) for k, v in dst.dimensions.items()} == {
            k: len(v) for k, v in src.dimensions.items()
        }
        assert dst.dimensions["time"].isunlimited() == src.dimensions["time"].isunlimited()
        for name in ("time", "level", "lat", "lon", "airmass"):
            np.testing.assert_array_equal(dst[name][:], src[name][:])
            assert dst[name].__dict__ == src[name].__dict__
        assert dst["time"].calendar == "noleap" and dst["time"].units == src["time"].units
        assert dst["BCB"].dimensions == src["BCB"].dimensions
        assert dst["BCB"].units == src["BCB"].units
        assert src.dimensions["level"].size == LEVELS + 1
        bcb = dst["BCB"][:]  # masked where fill
        assert not np.ma.getmaskarray(bcb[:, :LEVELS]).any()
        assert np.ma.getmaskarray(bcb[:, LEVELS:]).all()  # not emulated: fill values
        for attr in src.ncattrs():
            assert dst.getncattr(attr) == src.getncattr(attr)
        assert dst.getncattr(predict.MODEL_ATTRIBUTE).startswith("tiny/1 exported ")
        assert not np.allclose(bcb[:, :LEVELS], src["BCB"][:, :LEVELS])  # emulated, not copied


def test_the_builder_reads_the_predictions_with_the_other_streams(predicted, tmp_path):
    out, summary = predicted
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for date in DAYS:
        stamp = yyyymmdd(parse_date(date))
        for stream in variables.STREAMS:
            name = variables.filename(stamp, stream)
            source = out / name if stream == "taijlh1" else DUMMY_DATA / name
            os.symlink(source, mixed / name)
    dataset = build_dataset(
        mixed, tmp_path / "tfds", "tiny_l3", {"test": (DAYS[0], DAYS[-1])},
        name="tiny_predicted", stats_splits=("test",),
    )  # fmt: skip
    assert dataset.split_sizes == {"test": 12}
    frames = list(dataset.frames("test").as_numpy_iterator())
    stored = np.stack([f["bcb"] for f in frames])  # (12, H, W, L)
    written = np.transpose(np.concatenate([_bcb(p) for p in summary.written]), (0, 2, 3, 1))
    np.testing.assert_array_equal(stored, written)
    airmass = np.stack([f["airmass"] for f in frames])
    truth = [reader.read_day(DUMMY_DATA, parse_date(d), dataset.spec).airmass for d in DAYS]
    np.testing.assert_array_equal(airmass, np.concatenate(truth))


def test_a_rerun_skips_complete_days_and_redoes_missing_ones(exported, predicted, tmp_path):
    out, summary = predicted
    work = tmp_path / "out"
    work.mkdir()
    for path in summary.written:
        (work / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    again = predict.predict_files(
        exported.path, DUMMY_DATA, DAYS[0], DAYS[-1], work, progress=False
    )
    assert again.written == [] and len(again.skipped) == 3
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == before
    _out_file(work, DAYS[1]).unlink()  # the middle day: its context comes from 01-02's inputs
    again = predict.predict_files(
        exported.path, DUMMY_DATA, DAYS[0], DAYS[-1], work, progress=False
    )
    assert again.written == [_out_file(work, DAYS[1])] and len(again.skipped) == 2
    redone, first = _bcb(_out_file(work, DAYS[1])), _bcb(_out_file(out, DAYS[1]))
    # The context is encoded afresh from 01-02's files instead of carried: rounding only.
    assert export.relative_error(redone, first, exported.stats.log_offset) < 1e-5
    assert sorted(p.name for p in work.iterdir()) == sorted(before)  # no temporary file left


def test_an_output_of_another_export_is_not_taken_for_done(exported, predicted, tmp_path):
    out, _ = predicted
    path = tmp_path / _out_file(out, DAYS[0]).name
    path.write_bytes(_out_file(out, DAYS[0]).read_bytes())
    with netCDF4.Dataset(path, "a") as ds:
        ds.setncattr(predict.MODEL_ATTRIBUTE, "other/3 exported 2020-01-01T00:00:00+00:00")
    with pytest.raises(ValueError, match=r"written by another export \(other/3"):
        predict.predict_files(exported.path, DUMMY_DATA, DAYS[0], DAYS[0], tmp_path, progress=False)
    summary = predict.predict_files(
        exported.path, DUMMY_DATA, DAYS[0], DAYS[0], tmp_path, overwrite=True, progress=False
    )
    assert summary.written == [path]


def test_the_windowed_signature_writes_the_same_files_through_the_cli(
    exported, predicted, tmp_path, capsys
):
    out, _ = predicted
    args = [
        "predict", "--model", str(exported.path), "--input", str(DUMMY_DATA), "--start",
        DAYS[1], "--end", DAYS[2], "--out", str(tmp_path), "--signature", "serving_default",
        "--batch-size", "3", "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    assert "wrote 2 files to" in capsys.readouterr().out
    for date in DAYS[1:]:
        windowed, stepped = _bcb(_out_file(tmp_path, date)), _bcb(_out_file(out, date))
        assert export.relative_error(windowed, stepped, exported.stats.log_offset) < 1e-5


def test_the_first_day_needs_the_day_before_or_pad_first(exported, reference, tmp_path, capsys):
    args = [
        "predict", "--model", str(exported.path), "--input", str(DUMMY_DATA), "--start",
        "2010-01-01", "--end", "2010-01-01", "--out", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "files of 2009-12-31" in err and "--pad-first" in err
    assert not list(tmp_path.iterdir())
    summary = predict.predict_files(
        exported.path, DUMMY_DATA, "2010-01-01", "2010-01-02", tmp_path, pad_first=True,
        progress=False,
    )  # fmt: skip
    assert summary.padded_steps == TIME_STEPS - 1
    with netCDF4.Dataset(summary.written[0]) as ds:
        assert ds.getncattr(predict.PADDED_ATTRIBUTE) == TIME_STEPS - 1  # steps 0 and 1
        bcb = np.transpose(np.asarray(ds["BCB"][:, :LEVELS]), (0, 2, 3, 1))
    with netCDF4.Dataset(summary.written[1]) as ds:
        assert predict.PADDED_ATTRIBUTE not in ds.ncattrs()
    # Steps 2 and 3 of 01-01 see no padding: the windows of the day's own steps.
    day = _day(exported)
    windows = {k: np.stack([v[s : s + TIME_STEPS] for s in (0, 1)]) for k, v in day.items()}
    full = exported.load().signatures["serving_default"](**windows)["bcb"].numpy()
    assert export.relative_error(bcb[2:], full, exported.stats.log_offset) < 1e-5
    # 01-02 continues with the real context.
    second = np.transpose(_bcb(summary.written[1]), (0, 2, 3, 1))
    assert export.relative_error(second, reference[:4], exported.stats.log_offset) < 1e-5


def _day(exported) -> dict[str, np.ndarray]:
    day = reader.read_day(DUMMY_DATA, parse_date("2010-01-01"), exported.spec)
    return {"x2d": day.x2d, "x3d": day.x3d}


def test_context_spans_as_many_previous_days_as_it_needs(exported):
    spec = exported.spec
    frames, padded = predict.context_frames(DUMMY_DATA, parse_date("2010-01-03"), 6, spec)
    days = [reader.read_day(DUMMY_DATA, parse_date(f"2010-01-0{d}"), spec) for d in (1, 2)]
    assert padded == 0
    np.testing.assert_array_equal(frames["x3d"], np.concatenate([d.x3d for d in days])[-6:])
    # 01-01 is the first day present: 2 of the 6 steps before 01-02 are copies of its first.
    frames, padded = predict.context_frames(
        DUMMY_DATA, parse_date("2010-01-02"), 6, spec, pad_first=True
    )
    assert padded == 2
    np.testing.assert_array_equal(frames["x2d"][:3], np.repeat(days[0].x2d[:1], 3, axis=0))
    np.testing.assert_array_equal(frames["x2d"][2:], days[0].x2d)
    with pytest.raises(ValueError, match="files of 2009-12-31"):
        predict.context_frames(DUMMY_DATA, parse_date("2010-01-02"), 6, spec)


def test_predict_refuses_a_missing_input_day_or_writing_over_the_input(exported, tmp_path):
    with pytest.raises(ValueError, match=r"Missing input file .*20100105\.aijh1E3oma\.nc"):
        predict.predict_files(exported.path, DUMMY_DATA, DAYS[0], "2010-01-05", tmp_path)
    with pytest.raises(ValueError, match="`out` must be another folder than `input`"):
        predict.predict_files(exported.path, DUMMY_DATA, DAYS[0], DAYS[0], DUMMY_DATA)
    with pytest.raises(ValueError, match="`model` must be a version folder"):
        predict.predict_files(tmp_path, DUMMY_DATA, DAYS[0], DAYS[0], tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_emission_memory_is_carried_across_days_and_through_a_resume(
    tiny_dataset, tmp_path_factory, tmp_path
):
    exported = export.ExportedModel.open(tiny_export(tiny_dataset, tmp_path_factory, "memory"))
    out = tmp_path / "out"
    summary = predict.predict_files(
        exported.path, DUMMY_DATA, DAYS[0], DAYS[-1], out, progress=False
    )
    # The memory starts at the first step read: 01-01's last T − 1 = 2 steps, the context.
    spec = exported.spec
    days = [reader.read_day(DUMMY_DATA, parse_date(f"2010-01-0{d}"), spec) for d in range(1, 5)]
    x2d = np.concatenate([d.x2d for d in days])[2:]  # (14, H, W, 6)
    times = np.concatenate([d.times for d in days])[2:]
    memory, _, _ = predict.emission_memory(x2d[..., 5], times, MEMORY_DAYS)
    x3d = np.concatenate([d.x3d for d in days])[2:]
    lev = spec.n_levels
    advected = advected_memory(
        x2d[..., 5], x3d[..., :lev].mean(-1), x3d[..., lev : 2 * lev].mean(-1), times,
        ADVECTED_DAYS, spec.grid,
    )  # fmt: skip
    seq = {"x2d": np.concatenate([x2d, memory, advected], axis=-1), "x3d": x3d}
    windows = {k: np.stack([v[s : s + TIME_STEPS] for s in range(12)]) for k, v in seq.items()}
    expected = exported.load().signatures["serving_default"](**windows)["bcb"].numpy()
    written = np.transpose(np.concatenate([_bcb(p) for p in summary.written]), (0, 2, 3, 1))
    assert export.relative_error(written, expected, exported.stats.log_offset) < 1e-5
    # A resumed run reads the days it skips, so the memory after them is the same.
    first = _bcb(_out_file(out, DAYS[2]))
    _out_file(out, DAYS[2]).unlink()
    again = predict.predict_files(exported.path, DUMMY_DATA, DAYS[0], DAYS[-1], out, progress=False)
    assert again.written == [_out_file(out, DAYS[2])] and len(again.skipped) == 2
    redone = _bcb(_out_file(out, DAYS[2]))
    assert export.relative_error(redone, first, exported.stats.log_offset) < 1e-5


def test_a_model_without_context_carries_both_memories(tiny_dataset, tmp_path):
    """T = 1 (no context frames): the memories start at the range's first step and the files
    hold the model on each step with them."""
    from serving_helpers import tiny_model_dir

    model_dir = tiny_model_dir(
        tiny_dataset, tmp_path / "run", "none", time_steps=1, emission_memory_days=(0.5,),
        advected_memory_days=(1.0,),
    )  # fmt: skip
    version = export.export_model(model_dir, "t1", tmp_path / "saved", dataset=tiny_dataset)
    exported = export.ExportedModel.open(version)
    summary = predict.predict_files(
        exported.path, DUMMY_DATA, DAYS[0], DAYS[1], tmp_path / "out", progress=False
    )
    spec = exported.spec
    days = [reader.read_day(DUMMY_DATA, parse_date(d), spec) for d in DAYS[:2]]
    x2d, x3d = np.concatenate([d.x2d for d in days]), np.concatenate([d.x3d for d in days])
    times = np.concatenate([d.times for d in days])
    memory, _, _ = predict.emission_memory(x2d[..., 5], times, (0.5,))
    lev = spec.n_levels
    advected = advected_memory(
        x2d[..., 5], x3d[..., :lev].mean(-1), x3d[..., lev : 2 * lev].mean(-1), times, (1.0,),
        spec.grid,
    )  # fmt: skip
    windows = {
        "x2d": np.concatenate([x2d, memory, advected], axis=-1)[:, None].astype(np.float32),
        "x3d": x3d[:, None],
    }
    expected = exported.load().signatures["serving_default"](**windows)["bcb"].numpy()
    written = np.transpose(np.concatenate([_bcb(p) for p in summary.written]), (0, 2, 3, 1))
    assert export.relative_error(written, expected, exported.stats.log_offset) < 1e-5


def test_emission_memory_follows_the_recurrence():
    emission = np.array([[[2.0]], [[0.0]], [[0.0]]])  # (3, 1, 1): one cell, a burst then none
    times = np.array([0.0, 0.5, 1.5])
    channels, memory, time = predict.emission_memory(emission, times, (0.5, 1.0))
    decay = np.exp([-1.0, -0.5])  # after 0.5 d at τ = 0.5 and 1 d
    np.testing.assert_allclose(
        channels[:, 0, 0], [[2, 2], 2 * decay, 2 * decay * np.exp([-2, -1])], rtol=1e-6
    )
    assert time == 1.5
    more, _, _ = predict.emission_memory(np.ones((1, 1, 1)), [2.0], (0.5, 1.0), memory, time)
    a = np.exp([-1.0, -0.5])
    np.testing.assert_allclose(more[0, 0, 0], a * memory[0, 0] + (1 - a), rtol=1e-6)
