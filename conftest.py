"""Session fixtures shared by ``tests/`` and ``tfds_builders/``.

`tiny_dataset` builds the ``tiny_l3`` dataset from the builder's dummy data once per test
session (the real TFDS build: reader, statistics, TFRecords); tests that read a built dataset
take it instead of building their own.
"""

from pathlib import Path

import pytest

#: The dummy data of the ``tiny_l3`` builder config (6×8 grid, L = 3, 4 steps a day).
DUMMY_DATA = Path(__file__).parent / "tfds_builders" / "modele_bcb" / "dummy_data"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The ``tiny_l3`` dataset built from the dummy data, opened (`BuiltDataset`)."""
    from bcb_emulator.data import build_dataset

    return build_dataset(DUMMY_DATA, tmp_path_factory.mktemp("tiny_tfds"), "tiny_l3")
