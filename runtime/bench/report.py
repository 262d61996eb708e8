"""A benchmark report (the dict `bench_bundle` returns) as a terminal table, JSON, CSV, Markdown and
a PNG (latency CDF per variant for each target, and accuracy against latency when the bundle has
an evaluation), and where it is saved."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from fusionrt.bundle import Bundle, edit

BUNDLE_REPORT = "reports/bench.json"  # where save() puts the JSON inside a bundle
CSV_COLUMNS = (
    "target", "backend", "variant", "device", "threads", "batch", "status", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
    "max_ms", "mean_ms", "std_ms", "throughput_per_s", "copy_p50_ms", "compute_p50_ms", "stable", "windows", "macs",
    "gflops", "peak_fraction", "error",
)  # fmt: skip


def flat_row(row: dict) -> dict:
    """One report row as the flat record CSV_COLUMNS name ('' where a figure does not apply)."""
    latency = row.get("latency_ms") or {}
    copy, compute = row.get("copy_ms"), row.get("compute_ms")
    flat = {k: row.get(k) for k in ("target", "backend", "variant", "device", "threads", "batch", "status", "stable",
                                     "windows", "throughput_per_s", "macs", "gflops", "peak_fraction", "error")}
    flat.update({f"{k}_ms": latency.get(k) for k in ("p50", "p90", "p95", "p99", "max", "mean", "std")})
    flat["copy_p50_ms"] = copy["p50"] if isinstance(copy, dict) else copy
    flat["compute_p50_ms"] = compute["p50"] if compute else None
    return {k: "" if flat.get(k) is None else flat[k] for k in CSV_COLUMNS}


def to_json(report: dict) -> str:
    return json.dumps(report, indent=1) + "\n"


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_row(r) for r in report["rows"])
    return out.getvalue()


def _ms(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _copy(row: dict) -> str:
    copy = row.get("copy_ms")
    return _ms(copy["p50"]) if isinstance(copy, dict) else ("n/a" if copy and copy.startswith("n/a") else "incl.")


def _cells(row: dict) -> list[str]:
    head = [row["target"], row["backend"], row["variant"], str(row["threads"]), str(row["batch"])]
    if row["status"] != "ok":
        return head + ["ERROR: " + row["error"]]
    lat = row["latency_ms"]
    gflops = f"{row['gflops']:.2f}" if row.get("gflops") is not None else "-"
    fraction = f"{row['peak_fraction']:.1%}" if row.get("peak_fraction") is not None else "-"
    return head + [
        _ms(lat["p50"]), _ms(lat["p90"]), _ms(lat["p95"]), _ms(lat["p99"]), _ms(lat["max"]),
        f"{lat['mean']:.3f}±{lat['std']:.3f}", f"{row['throughput_per_s']:.1f}", _copy(row), gflops, fraction,
        "yes" if row["stable"] else "NO (load)" if row.get("loaded") else f"NO ({row['windows']} windows)",
    ]  # fmt: skip


HEADER = ["target", "backend", "variant", "thr", "batch", "p50 ms", "p90", "p95", "p99", "max", "mean±std",
          "items/s", "copy ms", "GFLOP/s", "of peak", "stable"]  # fmt: skip


def context_lines(report: dict) -> list[str]:
    m = report["machine"]
    gpu = m["gpu"] if isinstance(m["gpu"], str) else ", ".join(g["name"] for g in m["gpu"])
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    settings, load = report["settings"], report["load_average"]
    lines = [
        f"settings: warm-up {settings['warmup_ms']:g} ms, windows of {settings['window_ms']:g} ms (at least "
        f"{settings['min_runs']} runs) until {settings['stability']}, at most {settings['max_windows']}",
        f"machine: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no flags known'}), {m['cores']} cores, "
        f"{m['memory_gib']} GiB; GPU: {gpu}",
        f"versions: {versions}; onnxruntime providers: {', '.join(m['onnxruntime_providers'])}",
        f"load average (1 min, this benchmark included): {load['start']:.2f} at the start, {load['end']:.2f} at the end",
    ]
    peak = report["peak"]
    if peak.get("skipped"):
        lines.append(f"GEMM peak: skipped: {peak['skipped']}")
    elif peak["ort_gflops"]:
        rates = "; ".join(f"{t} thr: ORT {peak['ort_gflops'][t]:.1f}, NumPy {peak['numpy_gflops'][t]:.1f}"
                          for t in peak["ort_gflops"])
        lines.append(f"FP32 GEMM peak ({peak['size']}^3, GFLOP/s): {rates}")
    return lines


def notes(report: dict) -> list[str]:
    lines = [f"backend {b} skipped: {s['reason']}" for b, s in report["backends"].items() if s["status"] != "ok"]
    if report["accuracy_latency"]["skipped"]:
        lines.append(f"accuracy-vs-latency scatter skipped: {report['accuracy_latency']['skipped']}")
    if report["load_average"].get("flag"):
        lines.append(f"LOADED: {report['load_average']['flag']}")
    unstable = sum(1 for r in report["rows"] if r["status"] == "ok" and not r["stable"] and not r.get("loaded"))
    if unstable:
        lines.append(f"{unstable} point(s) did not meet the stability rule ({report['settings']['stability']}) "
                     f"within {report['settings']['max_windows']} windows: their figures are flagged unstable")
    return lines


def format_table(report: dict) -> str:
    """The terminal table: one line per row, then speed-ups, skipped backends and notes."""
    rows = [HEADER] + [_cells(r) for r in report["rows"]]
    widths = [max(len(r[i]) for r in rows if len(r) > i and not r[i].startswith("ERROR")) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines += ["", *context_lines(report)]
    for s in report["ratios"]:
        lines.append(f"speed-up {s['target']} ({s['threads']} thr, batch {s['batch']}): {s['candidate']} vs "
                     f"{s['baseline']}: {s['speedup']:.2f}x")
    lines += notes(report)
    return "\n".join(lines)


def to_markdown(report: dict, command: str | None = None) -> str:
    main = report["settings"]["main"]
    lines = [f"# fusionrt bench: {report['bundle']}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Created {report['created']}. Statistics come from the last three (stable) windows of each point. "
              f"Main point: batch {main['batch']}, {main['threads']} thread(s); the thread sweep is at that batch, "
              f"the batch sweep at that thread count. GFLOP/s = 2 x MACs / p50 compute time; \"of peak\" is against "
              "the FP32 GEMM peak at the same thread count (INT8 kernels can pass 100 %).", ""]
    lines += [f"- {line}" for line in context_lines(report)] + [""]
    if report["ratios"]:
        lines += [f"## Speed-ups at batch {main['batch']} (p50)", "",
                  "| target | threads | candidate | baseline | speed-up |", "|---|---|---|---|---|"]
        lines += [f"| {s['target']} | {s['threads']} | {s['candidate']} | {s['baseline']} | {s['speedup']:.2f}x |"
                  for s in report["ratios"]]
        lines.append("")
    lines += ["## All points", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in report["rows"]:
        cells = [c.replace("|", "\\|") for c in _cells(row)]
        lines.append("| " + " | ".join(cells + [""] * (len(HEADER) - len(cells))) + " |")
    extra = notes(report)
    if extra:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in extra]
    return "\n".join(lines) + "\n"


def write_png(report: dict, path: str | Path) -> None:
    """Latency CDF per backend x variant for each target at the main point, and (when the bundle has
    an evaluation) accuracy against whole-model latency."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    main = report["settings"]["main"]
    at_main = [r for r in report["rows"]
               if r["status"] == "ok" and (r["threads"], r["batch"]) == (main["threads"], main["batch"])]
    targets = list(dict.fromkeys(r["target"] for r in at_main))
    scatter = report["accuracy_latency"]["points"]
    panels = len(targets) + (1 if scatter else 0)
    columns = min(3, max(panels, 1))
    rows = max(1, -(-panels // columns))
    figure = Figure(figsize=(5.0 * columns, 3.8 * rows))
    FigureCanvasAgg(figure)
    quantiles = [k / 100 for k in range(101)]
    for i, target in enumerate(targets, start=1):
        axes = figure.add_subplot(rows, columns, i)
        for r in (r for r in at_main if r["target"] == target):
            axes.plot(r["cdf_ms"], quantiles, label=f"{r['backend']} {r['variant']}")
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("latency (ms)")
        axes.set_ylabel("fraction of runs")
        axes.set_title(f"{target}: batch {main['batch']}, {main['threads']} thr")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    if scatter:
        axes = figure.add_subplot(rows, columns, panels)
        axes.scatter([p["p50_ms"] for p in scatter], [100 * p["accuracy"] for p in scatter])
        names: dict[tuple[float, float], list[str]] = {}
        for p in scatter:  # variants that ran the same files (e.g. default and fp32) share one label
            names.setdefault((p["p50_ms"], 100 * p["accuracy"]), []).append(p["variant"])
        for xy, variants in names.items():
            axes.annotate("/".join(variants), xy, fontsize=8)
        axes.set_xlabel("whole model p50 (ms), ort-cpu")
        axes.set_ylabel("accuracy (%)")
        axes.set_title("accuracy vs latency")
        axes.grid(alpha=0.3)
    if not panels:
        figure.text(0.5, 0.5, "no successful measurement at the main point", ha="center")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def save(report: dict, *, bundle: Bundle | None = None, json_path=None, csv_path=None, markdown_path=None,
         png_path=None, command: str | None = None) -> list[Path]:
    """Write the report where asked; the JSON goes to the bundle's reports/bench.json (through the
    bundle's edit transaction, which records its hash) unless `json_path` is given. Returns the files
    written."""
    written = []
    if json_path is None and bundle is not None:
        with edit(bundle) as change:
            change.write_text(BUNDLE_REPORT, to_json(report))
        written.append(bundle.root / BUNDLE_REPORT)
    elif json_path is not None:
        Path(json_path).write_text(to_json(report), encoding="utf-8")
        written.append(Path(json_path))
    for path, render in ((csv_path, to_csv), (markdown_path, lambda r: to_markdown(r, command))):
        if path is not None:
            Path(path).write_text(render(report), encoding="utf-8")
            written.append(Path(path))
    if png_path is not None:
        write_png(report, png_path)
        written.append(Path(png_path))
    return written
