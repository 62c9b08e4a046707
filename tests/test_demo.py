"""The demo's simulated periods and its dataset config agree."""

from bcb_emulator import demo
from bcb_emulator.data.calendar import parse_date
from bcb_emulator.reference.emissions import SCENARIOS
from tfds_builders.modele_bcb import modele_bcb_dataset_builder as mb


def test_demo_runs_cover_every_split_of_the_demo_config():
    spec = mb.Builder.builder_configs[demo.DEMO_BUILDER_CONFIG].spec
    simulated = set()
    for run in demo.DEMO_RUNS:
        assert run.scenario in SCENARIOS
        simulated.update(range(parse_date(run.start), parse_date(run.end) + 1))
    for split in spec.splits:
        assert set(split.days()) <= simulated, split.name
    assert spec.steps_per_day == 48 // 6  # the demo preset writes 3-hourly output
    assert {"pi_train", "train", "validation", "test"} <= {s.name for s in spec.splits}


def test_reference_model_stamps_match_the_demo_config(tmp_path):
    import netCDF4
    import numpy as np

    from bcb_emulator.data.calendar import expected_times
    from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

    spec = mb.Builder.builder_configs[demo.DEMO_BUILDER_CONFIG].spec
    config = SimulationConfig.preset("demo", grid="small", spinup_days=0, n_levels=2)
    ReferenceModel(config).run("2010-08-01", "2010-08-01", tmp_path, progress=False)
    with netCDF4.Dataset(tmp_path / "20100801.taijlh1E3oma.nc") as ds:
        times = ds["time"][:]
    day = parse_date("2010-08-01")
    np.testing.assert_allclose(times, expected_times(day, spec.steps_per_day, spec.stamp_phase))


def test_demo_export_reuses_the_version_holding_the_same_model(tiny_dataset, tmp_path):
    """Stage 5 exports once; a rerun finds the version that holds this very model."""
    import dataclasses

    from tiny import tiny_train_config

    from bcb_emulator import training

    config = tiny_train_config(tiny_dataset, tmp_path / "run", per_level_metrics=False)
    training.train(config, verbose=0)
    run, saved = tmp_path / "run", tmp_path / "saved_models"
    first, exported = demo.export_demo_model(run, saved)
    assert exported and first == saved / demo.DEMO_MODEL_NAME / "1"
    again, exported = demo.export_demo_model(run, saved)
    assert again == first and not exported
    other = dataclasses.replace(config, out_dir=str(tmp_path / "other"), seed=1)
    training.train(other, verbose=0)
    second, exported = demo.export_demo_model(tmp_path / "other", saved)
    assert exported and second == saved / demo.DEMO_MODEL_NAME / "2"


def test_a_run_of_an_older_demo_config_is_set_aside_not_deleted(tmp_path):
    import dataclasses

    from bcb_emulator.config import demo_train_config

    folder = tmp_path / "training"
    new = demo_train_config("d", str(folder), "demo_l20")
    old = dataclasses.replace(new, target_transform="log")  # an older demo's loss
    folder.mkdir()
    old.save(folder / "train_config.json")
    (folder / "model.keras").write_text("old model")
    demo._set_aside_if_changed(folder, "train_config.json", new)
    assert not folder.exists()
    assert (tmp_path / "training.previous-1" / "model.keras").read_text() == "old model"
    folder.mkdir()
    new.save(folder / "train_config.json")
    demo._set_aside_if_changed(folder, "train_config.json", new)  # the same config: kept
    assert (folder / "train_config.json").exists()
    assert not (tmp_path / "training.previous-2").exists()
