"""The HTML report of a comparison or a tuning study: one self-contained file.

Plots are matplotlib figures inlined as SVG: no script, no network, opens in any browser and
stays small (plotly's self-contained HTML would carry its JavaScript library in every file).
"""
from __future__ import annotations

import html
import io
import json
from pathlib import Path

from edgec.errors import InputError, require

STYLE = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}td.l{text-align:left}
tr.pareto td{background:#eef7ee}tr.chosen td{font-weight:bold}.plots{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}svg{max-width:100%;height:auto}"""


def load(path: str | Path):
    """A results JSON written by `edgec compare` or `edgec tune`, checked against its type."""
    from edgec.choice.compare import Comparison
    from edgec.package.harness.manifest import ManifestError, from_json

    file = Path(path)
    try:
        return from_json(Comparison, json.loads(file.read_text()), str(file))
    except FileNotFoundError:
        raise InputError(f"results file not found: {file} (write one with `edgec compare ... --json FILE`)") from None
    except (json.JSONDecodeError, ManifestError) as exc:
        raise InputError(f"{file} is not a results file of edgec compare or tune ({exc})") from None


def write(result, path: str | Path) -> Path:
    """Write the report of `result` (a Comparison, or its JSON form) to `path`."""
    from edgec.choice.compare import Comparison
    from edgec.package.harness.manifest import from_json

    if not isinstance(result, Comparison):
        result = from_json(Comparison, result, "results")
    path = Path(path)
    path.write_text(render(result))
    return path


def render(result) -> str:
    plt = _pyplot()
    measured = [c for c in result.candidates if c.figures is not None]
    sections = [f"<h1>edgec: {html.escape(result.source)} on {html.escape(result.device)}</h1>",
                f"<p>{html.escape(_summary(result))}</p>"]
    plots = []
    if measured:
        plots.append(_scatter(plt, measured, "p50_ms", "p50 latency (ms, log scale)", result, "latency"))
        plots.append(_scatter(plt, measured, "size_bytes", "model size (kB, log scale)", result, "size", scale=1e-3))
    if result.layers:
        plots.append(_layer_errors(plt, result))
    if result.profile:
        plots.append(_profile(plt, result))
    sections.append('<div class="plots">' + "".join(plots) + "</div>")
    sections.append(_table(result))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgec report</title><style>{STYLE}</style>"
            f"</head><body>{''.join(sections)}</body></html>")


def _pyplot():
    matplotlib = require("matplotlib", "report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, selectable
    return plt


def _summary(result) -> str:
    measure = f"{result.measure} on {result.eval_data}" if result.measure else "no evaluation data"
    emulated = " Timings are from an emulated device: they prove that it runs, not how fast." if result.emulated else ""
    return f"Accuracy: {measure}. Recommended: {result.choice.why}.{emulated}"


def _svg(plt, figure, name: str, caption: str) -> str:
    plt.rcParams["svg.hashsalt"] = name  # distinct, deterministic element ids per figure
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})  # same input, same file
    plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    return f'<figure id="{name}">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _accuracy(candidate) -> float:
    return candidate.figures.accuracy if candidate.figures.accuracy is not None else 0.0


def _scatter(plt, measured, field: str, label: str, result, name: str, scale: float = 1.0) -> str:
    figure, axes = plt.subplots(figsize=(6, 4))
    for candidate in measured:
        x = getattr(candidate.figures, field) * scale
        axes.scatter([x], [_accuracy(candidate)], s=60, color="tab:green" if candidate.pareto else "tab:gray",
                     edgecolor="black" if candidate is _chosen(result) else "none", zorder=3)
        axes.annotate(candidate.label, (x, _accuracy(candidate)), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = sorted((getattr(c.figures, field) * scale, _accuracy(c)) for c in measured if c.pareto)
    if front:  # the front in this plane: best accuracy reached at each cost
        xs, ys, best = [], [], float("-inf")
        for x, y in front:
            if y > best:
                xs, ys, best = xs + [x], ys + [y], y
        axes.step(xs, ys, where="post", color="tab:green", label="Pareto front")
        axes.legend(loc="lower right")
    axes.set_xscale("log")  # candidates differ by factors, not by offsets
    axes.set_xlabel(label)
    axes.set_ylabel(f"{result.measure or 'accuracy'} (%)")
    axes.grid(alpha=0.3)
    return _svg(plt, figure, name, f"{label} vs accuracy; green: Pareto-optimal, outlined: recommended")


def _chosen(result):
    return result.candidates[result.choice.index] if result.choice.index is not None else None


def _bars(plt, labels: list[str], values: list[float], xlabel: str, name: str, caption: str) -> str:
    figure, axes = plt.subplots(figsize=(6, 0.25 * len(labels) + 1))
    axes.barh(range(len(labels)), values, color="tab:blue")
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    return _svg(plt, figure, name, caption)


def _layer_errors(plt, result) -> str:
    layers = sorted(result.layers, key=lambda layer: layer.sqnr_db)[:30]
    return _bars(plt, [f"{layer.name} ({layer.op})" for layer in layers], [layer.sqnr_db for layer in layers],
                 "SQNR vs float (dB, higher is better)", "layers",
                 f"per-layer int8 error of {result.layers_of} (worst first)")


def _profile(plt, result) -> str:
    layers = sorted(result.profile, key=lambda layer: -layer.ms)[:30]
    return _bars(plt, [f"{layer.name} ({layer.op})" for layer in layers], [layer.ms for layer in layers],
                 "ms per inference", "profile", f"per-layer latency of {result.profile_of} (slowest first)")


def _table(result) -> str:
    head = ["", "target", "precision", "options", "status", "size kB", "p50 ms", "p90 ms", "throughput /s",
            "peak MB", "accuracy %", "build s"]
    rows = []
    for i, c in enumerate(result.candidates):
        f = c.figures
        cells = [("*" if c.pareto else "") + ("<" if i == result.choice.index else ""), c.target, c.precision,
                 " ".join(f"{k}={v}" for k, v in sorted(c.flags.items())), c.status if f else f"{c.status}: {c.reason}"]
        cells += ([f"{f.size_bytes / 1e3:.1f}", f"{f.p50_ms:.3f}", f"{f.p90_ms:.3f}", f"{f.throughput_per_s:.0f}",
                   "" if f.peak_rss_mb is None else f"{f.peak_rss_mb:.0f}",
                   "" if f.accuracy is None else f"{f.accuracy:.2f}", f"{f.build_s:.1f}"] if f else [""] * 7)
        css = " ".join(k for k, on in (("pareto", c.pareto), ("chosen", i == result.choice.index)) if on)
        rows.append(f'<tr class="{css}">' + "".join(
            f'<td class="{"l" if j < 5 else ""}">{html.escape(str(v))}</td>' for j, v in enumerate(cells)) + "</tr>")
    return ("<h2>Candidates</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table><p>* Pareto-optimal on latency, size and accuracy; &lt; recommended.</p>")
