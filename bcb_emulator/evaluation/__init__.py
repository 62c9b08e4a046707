"""Evaluation in physical units: metrics, baselines, the streaming evaluation and the report.

- `skill`: the metrics, defined once (R², r, RMSE, bias; pooled or per step; column burden,
  global mass), each stating the dimensions it reduces;
- `regions`: GFED basis regions and seasons;
- `baselines`: NINT (the monthly climatology of the training splits) and persistence;
- `evaluate`: the models and baselines over splits of a built dataset, streamed;
- `report`: ``report.md`` with its PNGs, and ``metrics.json``.

`run_evaluation` does it all for a trained model (``bcb-emulator evaluate``).
"""

from bcb_emulator.evaluation.run import run_evaluation

__all__ = ["run_evaluation"]
