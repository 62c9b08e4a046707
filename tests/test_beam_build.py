"""The Beam path (DirectRunner) writes the same records, in the same order, as the plain path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bcb_emulator.data import build_dataset

beam = pytest.importorskip(
    "apache_beam", reason="apache-beam is not installed (it is in the `dev` extra)"
)

DUMMY = Path(__file__).parents[1] / "tfds_builders" / "modele_bcb" / "dummy_data"
SPLITS = {"train": ("2010-01-01", "2010-01-02"), "test": ("2010-01-04", "2010-01-04")}


def _records(dataset, split):
    return list(dataset.frames(split).as_numpy_iterator())


def test_beam_direct_runner_equals_plain_build(tmp_path, monkeypatch):
    from apache_beam.runners.direct.direct_runner import DirectRunner

    from tfds_builders.modele_bcb.modele_bcb_dataset_builder import Builder

    returned = []
    original = Builder._generate_examples

    def spy(self, **kwargs):
        returned.append(original(self, **kwargs))
        return returned[-1]

    monkeypatch.setattr(Builder, "_generate_examples", spy)

    plain = build_dataset(DUMMY, tmp_path / "plain", "tiny_l3", SPLITS, name="b")
    beamed = build_dataset(
        DUMMY, tmp_path / "beam", "tiny_l3", SPLITS, name="b", beam_runner=DirectRunner()
    )
    assert plain.split_sizes == beamed.split_sizes == {"train": 8, "test": 4}
    kinds = [isinstance(r, beam.PTransform) for r in returned]
    assert kinds == [False, False, True, True]  # plain generators, then Beam transforms
    for split in SPLITS:
        a, b = _records(plain, split), _records(beamed, split)
        assert len(a) == len(b)
        for ra, rb in zip(a, b, strict=True):
            assert ra.keys() == rb.keys()
            for key in ra:
                np.testing.assert_array_equal(ra[key], rb[key])
    np.testing.assert_array_equal(plain.stats.x3d_std, beamed.stats.x3d_std)
