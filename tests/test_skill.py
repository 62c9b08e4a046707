"""The skill benchmark's periods, dataset config and training configurations agree."""

import json
import pathlib

import pytest

from bcb_emulator import demo, skill
from bcb_emulator.config import TrainConfig
from bcb_emulator.data.calendar import parse_date
from bcb_emulator.reference.emissions import SCENARIOS
from tfds_builders.modele_bcb import modele_bcb_dataset_builder as mb

DOCS = pathlib.Path(__file__).parent.parent / "docs" / "skill"


def test_skill_runs_cover_every_split_and_hold_out_a_year():
    spec = mb.Builder.builder_configs[skill.SKILL_BUILDER_CONFIG].spec
    demo_spec = mb.Builder.builder_configs[demo.DEMO_BUILDER_CONFIG].spec
    simulated = set()
    for run in skill.SKILL_RUNS:
        assert run.scenario in SCENARIOS
        days = range(parse_date(run.start), parse_date(run.end) + 1)
        assert not simulated & set(days)
        simulated.update(days)
    for split in spec.splits:
        assert set(split.days()) <= simulated, split.name
    # Written like the demo's output (3-hourly stamps); statistics from the training year only.
    assert (spec.steps_per_day, spec.stamp_phase) == (
        demo_spec.steps_per_day,
        demo_spec.stamp_phase,
    )
    assert spec.stats_splits == ("train",)
    test, train = spec.split("test"), spec.split("train")
    assert len(test.days()) == len(train.days()) == 365  # the long run: a whole year, unseen
    assert min(test.days()) > max(train.days())
    assert set(skill.SKILL_EVALUATION_SPLITS) <= {s.name for s in spec.splits}


@pytest.mark.parametrize(
    "ablation",
    [{}, {"advected_memory_days": ()}, {"fusion": "none"}, {"use_3d": False, "fusion": "none"}],
)
def test_cpu_config_and_its_ablations_build(ablation):
    from bcb_emulator.models import build_emulator

    config = skill.cpu_train_config("data", "run", **ablation)
    assert config.builder_config == skill.SKILL_BUILDER_CONFIG
    model = build_emulator(config.model)
    advected = ablation.get("advected_memory_days", skill.SKILL_ADVECTED_MEMORY_DAYS)
    channels = 6 + len(skill.SKILL_EMISSION_MEMORY_DAYS) + len(advected)
    assert model.input["x2d"].shape == (None, 8, 46, 72, channels)
    assert ("x3d" in model.input) == ablation.get("use_3d", True)
    assert model.output.shape == (None, 46, 72, 20)


def test_native_config_has_the_papers_shapes():
    from bcb_emulator.models import build_emulator

    config = skill.native_train_config("data", "run")
    spec = mb.Builder.builder_configs[config.builder_config].spec
    assert spec.grid.shape == (90, 144) and spec.steps_per_day == 48  # 2°×2.5°, half-hourly
    assert {t.train_split for t in config.tiers} <= {s.name for s in spec.splits}
    model = build_emulator(config.model)
    assert model.input["x3d"].shape == (None, 48, 90, 144, 8 * 20)
    assert config.model.encoder_filters == config.model.lstm_filters == 64
    assert config.model.lstm_layers == 3


def test_committed_configs_are_what_the_functions_give():
    """``docs/skill`` holds the configurations the committed report was made with."""
    cpu = TrainConfig.load(DOCS / "cpu_train_config.json")
    assert cpu == skill.cpu_train_config(cpu.data_dir, cpu.out_dir)
    native = TrainConfig.load(DOCS / "native_train_config.json")
    assert native == skill.native_train_config(native.data_dir, native.out_dir)
    metrics = json.loads((DOCS / "metrics.json").read_text())
    assert set(metrics["splits"]) == set(skill.SKILL_EVALUATION_SPLITS)
    assert len(metrics["splits"]["test"]["models"]["emulator"]["months"]) == 12
