"""The results of a search: one row per trial, as CSV, Markdown and a plot.

Read from keras-tuner's project folder (``trial_<id>/trial.json``, written by the oracle), so
the table can be rewritten from the folder alone, e.g. after a distributed search:
`write_results(config)`. Columns: ``trial``, ``status``, the hyperparameters
(`tuning.config.HYPERPARAMETERS`; ``continues``: the trial a Hyperband round continues),
``objective`` (the value that ranks the trials: `TuneConfig.objective` at the trial's best
epoch), ``val_loss``, ``val_r2``, ``val_r2_l01`` (that epoch's), ``epochs`` (run),
``best_epoch``, ``seconds`` (wall time of the trial's fit: windowing, compiling, tracing,
every epoch), ``s_per_step`` (the last epoch's wall time over its training batches, its
validation included; without tracing when the trial ran more than one epoch), ``params``
(weights of the model).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib

from tuning.config import HYPERPARAMETERS, OBJECTIVES, TuneConfig

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"
#: Metrics of a trial's best epoch kept in the table.
METRICS = ("val_loss", "val_r2", "val_r2_l01")
#: The cost of a trial, as `EmulatorHyperModel.fit` reports it.
COSTS = (
    "epochs",
    "best_epoch",
    "seconds",
    "epoch_seconds",
    "steps_per_epoch",
    "train_steps",
    "params",
)


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """One trial of a search.

    Attributes:
        trial_id: keras-tuner's id (``"0"``, ``"1"``, … zero-padded to the trial count).
        status: ``COMPLETED``, ``RUNNING`` (killed or in progress), ``INVALID`` or ``FAILED``.
        values: the tuned hyperparameters (name -> value), active ones only.
        continues: for a Hyperband round that goes on from an earlier trial, that trial's id.
        objective: the objective at the trial's best epoch (None until completed).
        metrics: ``val_loss``, ``val_r2``, ``val_r2_l01`` of that epoch and the cost
            (`COSTS`, as `EmulatorHyperModel.fit` returns them).
    """

    trial_id: str
    status: str
    values: dict
    continues: str | None
    objective: float | None
    metrics: dict

    @property
    def seconds_per_step(self) -> float | None:
        """The last epoch's wall time per training batch (its validation included)."""
        steps = self.metrics.get("steps_per_epoch")
        return self.metrics["epoch_seconds"] / steps if steps else None


def read_trials(config: TuneConfig) -> list[TrialResult]:
    """Every trial in the project folder of `config`, in trial order."""
    from keras_tuner.src.engine.trial import Trial

    trials = []
    for path in sorted(config.project_dir.glob("trial_*/trial.json")):
        trial = Trial.load(str(path))
        values = trial.hyperparameters.values
        metrics = {
            name: float(trial.metrics.get_last_value(name))
            for name in (*METRICS, *COSTS)
            if trial.metrics.exists(name)
        }
        score = trial.score if trial.status == "COMPLETED" else None
        trials.append(
            TrialResult(
                trial_id=trial.trial_id,
                status=trial.status,
                values={k: values[k] for k in HYPERPARAMETERS if k in values},
                continues=values.get("tuner/trial_id"),
                objective=None if score is None or math.isnan(score) else float(score),
                metrics=metrics,
            )
        )
    return sorted(trials, key=lambda t: int(t.trial_id))


def best_trial(config: TuneConfig, trials: list[TrialResult]) -> TrialResult | None:
    """The completed trial best by `config.objective` (lowest loss, highest R²), or None."""
    done = [t for t in trials if t.objective is not None]
    if not done:
        return None
    sign = 1.0 if OBJECTIVES[config.objective] == "min" else -1.0
    return min(done, key=lambda t: (sign * t.objective, int(t.trial_id)))


def table_rows(trials: list[TrialResult]) -> list[dict]:
    """The results table: one dict per trial, in the column order of the module docstring."""
    rows = []
    for t in trials:
        row = {"trial": t.trial_id, "status": t.status}
        row.update({name: t.values.get(name, "") for name in HYPERPARAMETERS})
        row["continues"] = t.continues or ""
        row["objective"] = "" if t.objective is None else t.objective
        row.update({name: t.metrics.get(name, "") for name in METRICS})
        for name in ("epochs", "best_epoch"):
            row[name] = int(t.metrics[name]) if name in t.metrics else ""
        row["seconds"] = t.metrics.get("seconds", "")
        row["s_per_step"] = t.seconds_per_step or ""
        row["params"] = int(t.metrics["params"]) if "params" in t.metrics else ""
        rows.append(row)
    return rows


def write_results(config: TuneConfig, trials: list[TrialResult] | None = None) -> dict:
    """Writes ``results.csv``, ``results.md`` and ``results.png`` into `config.out_dir`;
    returns their paths by suffix (``"csv"``, ``"md"``, ``"png"``)."""
    if trials is None:
        trials = read_trials(config)
    out = pathlib.Path(config.out_dir)
    rows = table_rows(trials)
    columns = list(rows[0]) if rows else ["trial", "status", *HYPERPARAMETERS, "objective"]
    paths = {"csv": out / RESULTS_CSV, "md": out / RESULTS_MD, "png": out / RESULTS_PNG}
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    paths["md"].write_text(_markdown(config, trials, rows, columns))
    _plot(config, trials, paths["png"])
    return paths


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown(config, trials, rows, columns) -> str:
    best = best_trial(config, trials)
    direction = "lowest" if OBJECTIVES[config.objective] == "min" else "highest"
    lines = [
        f"# Search `{config.project_name}`: {config.tuner}, objective `{config.objective}` "
        f"({direction} is best)",
        "",
        f"Best: trial {best.trial_id}, {config.objective} = {best.objective:.4g}"
        if best
        else "No completed trial yet.",
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in rows:
        cells = [_format(row[c]) for c in columns]
        if best and row["trial"] == best.trial_id:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    seconds = sum(t.metrics.get("seconds", 0.0) for t in trials)
    lines += ["", f"{len(trials)} trials, {seconds:.0f} s of fitting in all."]
    return "\n".join(lines) + "\n"


def _plot(config: TuneConfig, trials: list[TrialResult], path: pathlib.Path) -> None:
    """The objective per trial (labelled with its T) and the best so far, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [t for t in trials if t.objective is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if done:
        x = [int(t.trial_id) for t in done]
        y = [t.objective for t in done]
        ax.plot(x, y, "o", label=f"{config.objective} at the trial's best epoch")
        pick = min if OBJECTIVES[config.objective] == "min" else max
        running = [pick(y[: k + 1]) for k in range(len(y))]
        ax.step(x, running, where="post", color="0.4", label="best so far")
        for xi, yi, t in zip(x, y, done, strict=True):
            ax.annotate(
                f"T={t.values.get('time_steps', '?')}",
                (xi, yi),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no completed trial", ha="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(config.objective)
    ax.set_title(f"{config.tuner} search: {config.objective} per trial")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
