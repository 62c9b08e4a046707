"""TFDS builder of ModelE E3 BCB output (``tfds new`` layout); see ``README.md``.

The builder class lives in ``modele_bcb_dataset_builder.py`` and is not imported here, so that
``tfds build tfds_builders/modele_bcb`` registers it exactly once.
"""
