"""`run_evaluation`: a trained emulator, its baselines and report, in one call."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence


def run_evaluation(
    model_dir: str | pathlib.Path,
    splits: Sequence[str],
    out: str | pathlib.Path,
    *,
    compare: Mapping[str, str] | None = None,
    ood_splits: Sequence[str] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> pathlib.Path:
    """Evaluates the model trained into `model_dir` on `splits`; writes ``out/report.md``, its
    PNGs and ``out/metrics.json``; returns the report's path.

    Args:
        model_dir: the ``out_dir`` of ``bcb-emulator train`` (``model.keras``,
            ``train_config.json``); its dataset is the one it was trained on.
        splits: splits of that dataset to evaluate.
        out: the report's folder (created).
        compare: other trained models to evaluate on the same samples, ``{name: out_dir}``
            (e.g. the ablations ``{"no_fusion": ..., "no_3d": ...}``).
        ood_splits: the splits held to the out-of-period target; default those whose name
            starts with ``ood``.
        batch_size: windows per batch.
        progress: progress bars.
    """
    from bcb_emulator.data import BuiltDataset
    from bcb_emulator.evaluation.baselines import MonthlyClimatology
    from bcb_emulator.evaluation.evaluate import evaluate, load_models, metrics_json, write_metrics
    from bcb_emulator.evaluation.report import write_report

    if not splits:
        raise ValueError("`splits` must name at least one split. Received: []")
    config, models = load_models(model_dir, compare)
    dataset = BuiltDataset.open(config.data_dir, config.builder_config)
    for split in splits:
        dataset.check_split(split)
    # NINT: the monthly means of the modern training years, the last tier's training split
    # (the pre-training tier's pre-industrial run has other emissions).
    nint_split = config.tiers[-1].train_split
    climatology = MonthlyClimatology.from_dataset(dataset, [nint_split])
    results = evaluate(
        models, dataset, splits, window=config.model.time_steps, batch_size=batch_size,
        climatology=climatology, progress=progress,
    )  # fmt: skip
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    about = {
        "model": str(pathlib.Path(model_dir)),
        "compared": ", ".join(f"{k} ({v})" for k, v in (compare or {}).items()) or "none",
        "dataset": f"modele_bcb/{dataset.name} in {dataset.path}",
        "NINT": f"monthly means of split {nint_split!r} (months with data: "
        f"{', '.join(map(str, climatology.months_with_data))})",
        "window T": str(config.model.time_steps),
    }
    content = metrics_json(results, dataset.spec.n_levels, climatology, **about)
    write_metrics(out / "metrics.json", content)
    if ood_splits is None:
        ood_splits = tuple(s for s in splits if s.startswith("ood"))
    return write_report(
        out, results, dataset.spec.grid, title=f"Skill of {pathlib.Path(model_dir).name}",
        about=about, ood_splits=tuple(ood_splits),
    )  # fmt: skip
