"""`describe`: the table `fusionrt inspect` prints."""

from __future__ import annotations

from pathlib import Path

from fusionrt.bundle.format import Bundle


def describe(bundle: Bundle) -> str:
    """The table `fusionrt inspect` prints: components, variants, IO, preprocessing and parity figures."""
    manifest = bundle.manifest
    export = bundle.report("export")
    report = export.get("components") if isinstance(export, dict) else None
    report = report if isinstance(report, dict) else {}
    labels = ", ".join(bundle.labels) if bundle.labels else "-"
    lines = [
        f"bundle {bundle.root}  ({manifest['format']} v{manifest['version']}, created {manifest.get('created', '?')})",
        f"task: {bundle.task}; {len(bundle.labels)} labels: {labels}",
        f"modalities: {', '.join(bundle.modalities)}; tokenizer: {manifest.get('tokenizer') or '-'}",
    ]
    for c in bundle.components.values():
        rate = f"{c.rate_hz:g} Hz" if c.rate_hz is not None else "-"
        lines += ["", f"{c.name}  role={c.role}  modality={c.modality or '-'}  rate={rate}"]
        io = [[label, s.name, s.dtype, f"[{', '.join(str(d) for d in s.shape)}]"]
              for label, specs in (("in", c.inputs), ("out", c.outputs)) for s in specs]
        lines += table(io, min_widths=(3, 16, 8))
        if c.preprocessing:
            lines.append("  preprocessing: " + " ".join(f"{k}={v}" for k, v in c.preprocessing.items()))
        rows = [["variant", "precision", "size", "exporter", "opt", "parity vs PyTorch"]]
        for v in c.variants.values():
            marker = "*" if v.name == c.default_variant else ""
            rows.append([v.name + marker, v.precision, _size(v.path), str(v.info.get("exporter", "-")),
                         str(v.info.get("optimization", "-")), _parity_text(_parity(report, c.name, v.name))])
        lines += table(rows, right=(2,), min_widths=(10, 9, 10, 11, 6))
        if c.defaults_by_target:
            lines.append("  (* CPU default) " + " ".join(f"{t} default: {v}" for t, v in c.defaults_by_target.items()))
        for e in c.engines.values():
            lines.append(f"  engine {e.precision:<5} {e.path.name} (from {e.source_variant}, "
                         f"{e.fingerprint.get('gpu_name', '?')}, TensorRT {e.fingerprint.get('tensorrt_version', '?')})")
    return "\n".join(lines)


def table(rows: list[list[str]], right: tuple[int, ...] = (), min_widths: tuple[int, ...] = ()) -> list[str]:
    """Rows as lines indented by two, each column as wide as its widest cell (the last one unpadded), so
    a long variant name (int8-dynamic-repaired) or input name keeps every column aligned."""
    if not rows:
        return []
    widths = [max([len(row[i]) for row in rows] + list(min_widths[i:i + 1])) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append(("  " + " ".join([*cells, row[-1]])).rstrip())
    return lines


def _size(path: Path) -> str:
    size = float(path.stat().st_size) if path.is_file() else 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def _parity(report: dict, component: str, variant: str) -> object:
    """reports/export.json's parity entry of one variant; None when absent or not shaped as written."""
    entry = report.get(component)
    entry = entry.get("variants") if isinstance(entry, dict) else None
    entry = entry.get(variant) if isinstance(entry, dict) else None
    return entry.get("parity") if isinstance(entry, dict) else None


def _parity_text(parity: object) -> str:
    if not parity:
        return "-"
    try:
        return _parity_figures(parity)
    except (AttributeError, KeyError, TypeError, ValueError):
        return "(reports/export.json: parity entry not readable; re-export to rewrite it)"


def _parity_figures(parity: dict) -> str:
    parts = [
        f"{name}: cos={o['cosine']:.6f} max_abs={o['max_abs']:.2g}"
        + (f" argmax={o['argmax_agreement']:.0%}" if o.get("argmax_agreement") is not None else "")
        for name, o in parity.get("outputs", {}).items()
    ]
    return "; ".join(parts) + f" ({parity.get('inputs', '?')} input sets)"
