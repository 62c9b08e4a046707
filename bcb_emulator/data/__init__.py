"""The data path: ModelE files in, TFRecords and ``model.fit`` windows out.

Modules, in the order data flows through them:

- `calendar`: dates and time stamps (``noleap`` days since 1850-01-01);
- `spec`: `DatasetSpec` and `SplitRange`, a dataset's grid, levels, time step and splits;
- `reader`: reading and validating ModelE daily files (``docs/data_contract.md``);
- `writer`: writing daily files in the ModelE layout (the reference model's output);
- `synthetic`: seeded synthetic files for dummy data, tests and benchmarks;
- `normalization`: the statistics stored with a dataset;
- `dataset`: `build_dataset` and `BuiltDataset`, a built dataset opened once;
- `pipeline`: the ``tf.data`` windows (imports TensorFlow).
"""

from bcb_emulator.data.dataset import BuiltDataset, build_dataset

__all__ = ["BuiltDataset", "build_dataset"]
