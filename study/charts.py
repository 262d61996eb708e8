"""The study's PNG charts (matplotlib, imported when a chart is drawn) and the mean ± std format."""

from __future__ import annotations

from pathlib import Path

from fusionrt.study.kinds import NONE, kind_label


def pm(agg: dict, digits: int = 3) -> str:
    """'0.948 ± 0.004' (sample std over seeds), or the bare mean for a single seed."""
    if agg["std"] is None:
        return f"{agg['mean']:.{digits}f}"
    return f"{agg['mean']:.{digits}f} ± {agg['std']:.{digits}f}"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _std(agg: dict) -> float:
    return agg["std"] or 0.0


def accuracy_chart(results: dict, path: Path) -> None:
    """Grouped bars per model: accuracy and macro-F1, error bars = sample std over seeds."""
    kinds, summary = results["kinds"], results["summary"]
    figure = _figure(1.2 + 1.1 * len(kinds), 4.0)
    axes = figure.add_subplot()
    x = list(range(len(kinds)))
    for offset, metric, name in ((-0.2, "accuracy", "accuracy"), (0.2, "macro_f1", "macro-F1")):
        axes.bar([i + offset for i in x], [summary[k][metric]["mean"] for k in kinds], width=0.4, label=name,
                 yerr=[_std(summary[k][metric]) for k in kinds], capsize=3)  # fmt: skip
    axes.set_xticks(x, [kind_label(k) for k in kinds], rotation=20, ha="right")
    axes.set_ylim(0, 1.15)
    axes.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("test split, default noise")
    axes.set_title(f"mean ± std over {len(results['seeds'])} seeds")
    axes.legend(loc="upper center", ncol=2)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def noise_chart(results: dict, path: Path) -> None:
    """One panel per modality: accuracy against that modality's noise level, one line per model."""
    kinds, summary, modalities = results["kinds"], results["summary"], results["modalities"]
    levels = results["noise_levels"]
    figure = _figure(4.0 * len(modalities), 4.3)
    for i, m in enumerate(modalities):
        axes = figure.add_subplot(1, len(modalities), i + 1)
        for k in kinds:
            cells = [summary[k]["grid"][m][lv][NONE] for lv in levels]
            axes.errorbar([float(lv) for lv in levels], [c["mean"] for c in cells], yerr=[_std(c) for c in cells],
                          marker="o", capsize=3, label=kind_label(k),
                          linestyle="-" if k not in modalities else "--")  # fmt: skip
        axes.set_xlabel(f"{m} noise (others at default)")
        axes.set_ylim(0, 1)
        axes.grid(alpha=0.3)
        if i == 0:
            axes.set_ylabel("test accuracy")
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(kinds), fontsize=8)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=100)


def missing_chart(results: dict, path: Path) -> None:
    """Heat map: model x which modality is missing, at default noise, annotated mean ± std."""
    kinds, summary, modalities = results["kinds"], results["summary"], results["modalities"]
    columns = (NONE, *modalities)
    values = [[summary[k]["missing"][c]["mean"] for c in columns] for k in kinds]
    figure = _figure(2.5 + 1.6 * len(columns), 1.2 + 0.55 * len(kinds))
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    figure.colorbar(image, ax=axes, label="test accuracy")
    axes.set_xticks(range(len(columns)), ["nothing missing", *(f"{m} missing" for m in modalities)])
    axes.set_yticks(range(len(kinds)), [kind_label(k) for k in kinds])
    for r, k in enumerate(kinds):
        for c, column in enumerate(columns):
            agg = summary[k]["missing"][column]
            axes.text(c, r, pm(agg, 2), ha="center", va="center", fontsize=8,
                      color="black" if agg["mean"] > 0.6 else "white")  # fmt: skip
    axes.set_title("default noise; missing = presence 0 at inference")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
