"""The skill report: ``report.md`` with its PNGs, readable on GitHub, beside ``metrics.json``.

For each split: the targets (met or not, with the measured figure), a per-level table of every
pooled metric for every model, R² and r by level, vertical profiles of the truth and the models
(global and per region), time-mean column-burden maps (truth, emulator, difference), and time
series of global emissions, global BCB mass and level-1 BCB at source and remote cells.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import numpy as np

from bcb_emulator.evaluation import regions
from bcb_emulator.evaluation.evaluate import EMULATOR, NINT, PERSISTENCE, TRUTH, SplitSkill

#: The targets of the skill benchmark (issue "Evaluation in physical units").
TARGET_R2_L1, TARGET_R2_THROUGH_L15, TARGET_R_L1 = 0.95, 0.90, 0.97
TARGET_NINT_MARGIN_L1, TARGET_OOD_R2_L1, TARGET_MASS = 0.15, 0.90, 0.05
_STYLE = {EMULATOR: "-", NINT: "--", PERSISTENCE: ":"}


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def daily_mass_ratio(result: SplitSkill, model: str = EMULATOR) -> tuple[np.ndarray, np.ndarray]:
    """The daily-mean global BCB mass of `model` over the truth's, per day of the split.

    Returns:
        ``(days, ratio)``: the days (days since 1850-01-01) and the ratios, ``(n_days,)`` each.
    """
    truth, pred = np.array(result.mass[TRUTH]), np.array(result.mass[model], dtype=float)
    days = np.floor(np.array(result.times))
    unique = np.unique(days)
    ratio = np.array([np.nanmean(pred[days == d]) / truth[days == d].mean() for d in unique])
    return unique, ratio


def _targets(result: SplitSkill, ood: bool) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` rows for one split."""
    pooled = {m: result.pooled[m].result() for m in result.models}
    r2, r = pooled[EMULATOR]["r2"][0], pooled[EMULATOR]["r"][0]
    margin = r2 - pooled[NINT]["r2"][0]
    top = min(15, len(r2))
    days, ratio = daily_mass_ratio(result)
    mass_error = float(np.abs(ratio - 1).max())
    rows = []
    if ood:
        rows.append(
            (f"R² ≥ {TARGET_OOD_R2_L1} at level 1 (out of period)", r2[0], TARGET_OOD_R2_L1)
        )
    else:
        rows.append((f"R² ≥ {TARGET_R2_L1} at level 1", r2[0], TARGET_R2_L1))
        rows.append((f"R² ≥ {TARGET_R2_THROUGH_L15} on levels 1–{top} (lowest)", r2[:top].min(),
                     TARGET_R2_THROUGH_L15))  # fmt: skip
        rows.append((f"Pearson r ≥ {TARGET_R_L1} at level 1", r[0], TARGET_R_L1))
    rows.append(("beats NINT in R² at every level (smallest margin)", margin.min(), 1e-12))
    rows.append((f"beats NINT by ≥ {TARGET_NINT_MARGIN_L1} in R² at level 1", margin[0],
                 TARGET_NINT_MARGIN_L1))  # fmt: skip
    table = [(label, _fmt(value), bool(value >= bound)) for label, value, bound in rows]
    table.append(
        (
            f"global BCB mass within {TARGET_MASS:.0%} of the truth every day (daily means)",
            f"worst {mass_error:.1%} over {len(days)} days",
            bool(mass_error <= TARGET_MASS),
        )
    )
    return table


def _level_table(result: SplitSkill) -> list[str]:
    models = result.models
    pooled = {m: result.pooled[m].result() for m in models}
    head = ["level"] + [f"{metric} {m}" for metric in ("R²", "r", "RMSE", "bias") for m in models]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in range(pooled[EMULATOR]["r2"].shape[1]):
        cells = [str(k + 1)]
        for key in ("r2", "r", "rmse", "bias"):
            cells += [_fmt(pooled[m][key][0, k]) for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _plot_skill(result: SplitSkill, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for model in result.models:
        pooled = result.pooled[model].result()
        levels = np.arange(1, pooled["r2"].shape[1] + 1)
        for ax, key in zip(axes, ("r2", "r"), strict=True):
            ax.plot(pooled[key][0], levels, _STYLE.get(model, "-."), marker="o", ms=3,
                    label=model)  # fmt: skip
    for ax, title in zip(axes, ("R² (pooled, area-weighted)", "Pearson r"), strict=True):
        ax.set_title(title)
        ax.set_xlabel(title.split()[0])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("level")
    axes[0].set_xlim(left=max(-1.0, axes[0].get_xlim()[0]))
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{result.split}: skill by level")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_profiles(result: SplitSkill, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    groups = ("GLOBAL", *regions.region_names())
    fig, axes = plt.subplots(4, 4, figsize=(12, 12), sharey=True)
    for g, (ax, name) in enumerate(zip(axes.ravel(), groups, strict=True)):
        sums = result.pooled[EMULATOR].sums
        w = max(sums["w"][g, 0], 1e-300)
        levels = np.arange(1, sums["y"].shape[1] + 1)
        ax.plot(sums["y"][g] / w, levels, "k-", lw=2, label=TRUTH)
        for model in result.models:
            if model == PERSISTENCE:
                continue
            s = result.pooled[model].sums
            ax.plot(s["p"][g] / max(s["w"][g, 0], 1e-300), levels, _STYLE.get(model, "-."),
                    label=model)  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("mean BCB, 10⁻¹¹ kg/kg (area- and time-mean)")
    fig.supylabel("level")
    fig.suptitle(f"{result.split}: vertical profiles")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_burden(result: SplitSkill, grid, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    n = max(len(result.times), 1)
    truth = result.burden_sum[TRUTH] / n * 1e6  # mg m⁻²
    emu = result.burden_sum[EMULATOR] / n * 1e6
    diff = emu - truth
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    extent = (-180, 180, -90, 90)
    vmax = float(np.percentile(truth, 99.5)) or 1.0
    dmax = float(np.abs(diff).max()) or 1.0
    panels = ((truth, "truth", "viridis", 0, vmax), (emu, EMULATOR, "viridis", 0, vmax),
              (diff, "emulator − truth", "RdBu_r", -dmax, dmax))  # fmt: skip
    for ax, (field, title, cmap, lo, hi) in zip(axes, panels, strict=True):
        image = ax.imshow(field, origin="lower", extent=extent, cmap=cmap, vmin=lo, vmax=hi,
                          aspect="auto")  # fmt: skip
        ax.set_title(f"{title}", fontsize=10)
        fig.colorbar(image, ax=ax, label="mg m⁻²")
    fig.suptitle(f"{result.split}: time-mean column burden, levels 1–L")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_series(result: SplitSkill, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    times = np.array(result.times)
    days = np.floor(times)
    unique = np.unique(days)
    daily = lambda x: np.array([np.nanmean(np.asarray(x)[days == d]) for d in unique])  # noqa: E731
    n_cells = len(result.cells)
    fig, axes = plt.subplots(2 + n_cells, 1, figsize=(9, 2.2 * (2 + n_cells)), sharex=True)
    axes[0].plot(unique, daily(result.emission) * 86400 / 1e6, "r-o", ms=3)
    axes[0].set_ylabel("emissions\nGg/day")
    axes[1].plot(times, np.array(result.mass[TRUTH]) / 1e6, "k-", lw=2, label=TRUTH)
    for model in result.models:
        axes[1].plot(times, np.array(result.mass[model]) / 1e6, _STYLE.get(model, "-."),
                     label=model)  # fmt: skip
    axes[1].set_ylabel("BCB mass,\nlevels 1–L, Gg")
    axes[1].legend(fontsize=7, ncol=4)
    for c, (name, row, col) in enumerate(result.cells):
        ax = axes[2 + c]
        ax.plot(times, result.series[TRUTH][:, c], "k-", lw=2)
        for model in result.models:
            ax.plot(times, result.series[model][:, c], _STYLE.get(model, "-."))
        ax.set_ylabel(f"{name}\n({row},{col})", fontsize=8)
    axes[-1].set_xlabel("days since 1850-01-01 (noleap); level-1 BCB in 10⁻¹¹ kg/kg below row 2")
    fig.suptitle(f"{result.split}: time series")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _monthly_table(result: SplitSkill) -> list[str]:
    """The long run's table: per calendar month, R² at level 1 and the mass ratio."""
    days, ratio = daily_mass_ratio(result)
    day_months = np.array([regions.year_month_of(d) for d in days])
    shown = [m for m in (EMULATOR, NINT, PERSISTENCE) if m in result.models]
    head = ["month", *(f"R² L1 {m}" for m in shown), "mean R² emulator",
            "mass ratio emulator / truth (mean, daily min–max)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for month in sorted(result.months[EMULATOR]):
        r2 = {m: result.months[m][month].r2()[0] if month in result.months[m] else None
              for m in shown}  # fmt: skip
        here = ratio[day_months == month]
        lines.append(
            "| " + " | ".join([month, *(_fmt(r2[m][0] if r2[m] is not None else None)
                                         for m in shown),
                               _fmt(np.nanmean(r2[EMULATOR])),
                               f"{here.mean():.3f} ({here.min():.3f}–{here.max():.3f})"]) + " |"
        )  # fmt: skip
    return lines


def monthly_trend(result: SplitSkill, model: str = EMULATOR) -> float:
    """Least-squares slope of the monthly level-1 R² of `model` against the month's index
    (R² per month; NaN with fewer than 2 months): skill must not decay in a nowcast."""
    months = sorted(result.months[model])
    if len(months) < 2:
        return float("nan")
    r2 = np.array([result.months[model][m].r2()[0, 0] for m in months])
    return float(np.polyfit(np.arange(len(months)), r2, 1)[0])


def _plot_monthly(result: SplitSkill, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 6))
    for model in result.models:
        months = sorted(result.months[model])
        r2 = [result.months[model][m].r2()[0, 0] for m in months]
        axes[0].plot(months, r2, _STYLE.get(model, "-."), marker="o", ms=4, label=model)
    axes[0].set_ylabel("R², level 1")
    axes[0].set_ylim(bottom=max(-1.0, axes[0].get_ylim()[0]))
    axes[0].tick_params(axis="x", labelsize=7, rotation=45)
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    days, ratio = daily_mass_ratio(result)
    axes[1].axhspan(1 - TARGET_MASS, 1 + TARGET_MASS, color="0.85", label=f"±{TARGET_MASS:.0%}")
    axes[1].plot(days, ratio, "-", label="emulator / truth")
    axes[1].set_ylabel("global BCB mass ratio\n(daily means)")
    axes[1].set_xlabel("days since 1850-01-01 (noleap)")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.suptitle(f"{result.split}: the long run, month by month")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(
    out: pathlib.Path,
    results: Mapping[str, SplitSkill],
    grid,
    *,
    title: str,
    about: Mapping[str, str],
    ood_splits: tuple[str, ...] = (),
) -> pathlib.Path:
    """Writes ``out/report.md`` and its PNGs; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in about.items()]
    lines += [
        "",
        "All metrics are pooled over every sample and grid cell of the split, weighted by the "
        "exact cell areas, BCB in 10⁻¹¹ kg/kg (definitions and the log-space, per-step, "
        "regional, seasonal and column-burden figures: `metrics.json`). `nint` is the monthly "
        "mean of the modern training split (what ModelE prescribes without tracer physics); "
        "`persistence` is the true field one day earlier — it uses past BCB, which the emulator "
        "is not given, so it is a reference line only.",
        "",
        "## Summary",
        "",
        "| split | steps | R² L1 emulator | R² L1 nint | R² L1 persistence | mean R² emulator "
        "| mean R² nint |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for split, result in results.items():
        r2 = {m: result.pooled[m].result()["r2"][0] for m in result.models}
        lines.append(
            f"| {split} | {len(result.times)} | {_fmt(r2[EMULATOR][0])} | {_fmt(r2[NINT][0])} | "
            f"{_fmt(r2[PERSISTENCE][0])} | {_fmt(np.nanmean(r2[EMULATOR]))} | "
            f"{_fmt(np.nanmean(r2[NINT]))} |"
        )
    for split, result in results.items():
        lines += ["", f"## {split}", "", "### Targets", "", "| target | measured | met |",
                  "| --- | --- | --- |"]  # fmt: skip
        for target, measured, met in _targets(result, split in ood_splits):
            lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
        lines += ["", "### Per level (pooled, area-weighted, physical units)", ""]
        lines += _level_table(result)
        for name, plot in (("skill", _plot_skill), ("profiles", _plot_profiles),
                           ("series", _plot_series)):  # fmt: skip
            plot(result, out / f"{split}_{name}.png")
        _plot_burden(result, grid, out / f"{split}_burden.png")
        lines += ["", f"![R² and r by level]({split}_skill.png)", "",
                  f"![vertical profiles]({split}_profiles.png)", "",
                  f"![column burden]({split}_burden.png)", "",
                  f"![time series]({split}_series.png)"]  # fmt: skip
        cells = ", ".join(f"{n} (row {r}, column {c})" for n, r, c in result.cells)
        lines += ["", f"Cells of the time series: {cells}."]
        if len(result.months[EMULATOR]) >= 2:
            _plot_monthly(result, out / f"{split}_monthly.png")
            lines += ["", "### The long run, month by month", "",
                      "The emulator is applied window by window over the whole split; each "
                      "month's metrics pool that month's samples (global, area-weighted, "
                      "physical units).", ""]  # fmt: skip
            lines += _monthly_table(result)
            lines += ["", f"Trend of the emulator's monthly R² at level 1: "
                      f"{monthly_trend(result):+.4f} per month (least squares over "
                      f"{len(result.months[EMULATOR])} months).", "",
                      f"![monthly skill and mass ratio]({split}_monthly.png)"]  # fmt: skip
    path = out / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
