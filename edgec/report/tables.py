"""Rich tables for each command's result. Each function takes a console and the plain dict the API returned."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _mb(n) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _io(rows) -> str:
    return "\n".join(f"{r['name']} {r['shape']} {r['dtype']}" + (f" {r['layout']}" if r.get("layout") else "")
                     for r in rows)


def build_summary(console: Console, m: dict) -> None:
    table = _table(f"built {m['source']['name']} for {m['target']['name']}", "", "")
    table.add_row("precision", m["precision"])
    table.add_row("model", f"{m['model']['main']} ({_mb(m['model']['bytes'])}; source {_mb(m['source']['bytes'])})")
    table.add_row("inputs", _io(m["inputs"]))
    table.add_row("outputs", _io(m["outputs"]))
    table.add_row("graph", f"{m['build']['passes']['nodes_before']} -> {m['build']['passes']['nodes_after']} nodes")
    q = m.get("quantization") or {}
    if (q.get("fallback") or {}).get("float_layers"):
        table.add_row("kept in float", ", ".join(q["fallback"]["float_layers"]))
    v = m["verification"]["result"] or {}
    table.add_row("verify (build host)", "[green]passed[/]" if v.get("passed") else "[red]FAILED[/]")
    table.add_row("build time", f"{m['build'].get('seconds', 0):.1f} s")
    console.print(table)
    layers = q.get("layers") or []
    if layers:
        layer_table(console, layers[:5], "worst quantized layers")
    if m.get("choice"):
        precision_choice(console, m["choice"])


def precision_choice(console: Console, c: dict) -> None:
    emulated = " (emulated: chosen by rule, not by timings)" if c["emulated"] else ""
    table = _table(f"--precision auto on {c['device']}{emulated}", "precision", "status", "size", "p50 ms", "p90 ms",
                   f"{c['measure']} %")
    for r in c["candidates"]:
        figures = [_mb(r["size_bytes"]), f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}",
                   "" if r["accuracy"] is None else f"{r['accuracy']:.2f}"] if r["p50_ms"] is not None else [""] * 4
        mark = " <" if r["precision"] == c["winner"] else ""
        table.add_row(r["precision"] + mark, r["status"] + (f": {r['reason']}" if r["reason"] else ""), *figures)
    console.print(table)
    console.print(f"source model {c['baseline_accuracy']:.2f} %, budget {c['max_accuracy_drop']} points; "
                  f"chose {c['winner']}: {c['why']}")


def layer_table(console: Console, layers: list[dict], title: str) -> None:
    table = _table(title, "layer", "op", "SQNR dB", "worst slice dB", "lost here", "cosine", "precision")
    for layer in layers:
        worst = layer.get("worst_slice_db")
        table.add_row(layer["name"], layer["op"], f"{layer['sqnr_db']:.1f}", "" if worst is None else f"{worst:.1f}",
                      f"{layer.get('harm_db') or layer['added_db']:.1f}", f"{layer['cosine']:.5f}",
                      layer.get("precision", "int8"))
    console.print(table)


def inspect(console: Console, data: dict) -> None:
    if "artifact" in data:
        m = data["artifact"]
        build_summary(console, m)
        layers = (m.get("quantization") or {}).get("layers") or []
        if layers:
            layer_table(console, layers, "per-layer quantization error (worst first)")
        return
    model = data["model"]
    table = _table(f"{model['path']}", "", "")
    table.add_row("size", _mb(model["bytes"]))
    table.add_row("opset", str(model["opset"]))
    table.add_row("inputs", _io(model["inputs"]))
    table.add_row("outputs", _io(model["outputs"]))
    table.add_row("parameters", f"{model['parameters']:,}")
    macs = model["macs"]
    table.add_row("MACs", f"{macs['total']:,}" + ("" if macs["complete"] else " (some shapes unknown)"))
    console.print(table)
    if model.get("configuration_inputs"):
        config = _table("inputs that look like configuration", "input", "shape", "dtype", "to fold it away")
        for c in model["configuration_inputs"]:
            config.add_row(c["name"], str(c["shape"]), c["dtype"], c["suggest"])
        console.print(config)
    ops = _table("operators", "op", "count", "MACs")
    for op, count in model["operators"].items():
        ops.add_row(op, str(count), f"{macs['by_op'].get(op, 0):,}")
    console.print(ops)
    cover = _table("target coverage", "target", "unsupported operators")
    for target, missing in data["unsupported_by_target"].items():
        text = "; ".join(f"{u['op']} ({u['node']})" + (f": {u['reason']}" if u["reason"] else "") for u in missing)
        cover.add_row(target, text or "[green]none[/]")
    console.print(cover)


def verify(console: Console, r: dict) -> None:
    from edgec.package.harness.compare import WORDS

    title = f"verify on {r['device']}" + (" (emulated)" if r.get("emulated") else "")
    table = _table(title, "output", "against", "measures", "", "why")
    for kind, check in r["checks"].items():
        for name, e in check.items():
            measures = ", ".join(WORDS[k].format(v) for k, v in e["measures"].items())
            table.add_row(name, kind, measures, "[green]ok[/]" if e["passed"] else "[red]FAIL[/]", e["detail"])
    for name, check in (r.get("runtime_checks") or {}).items():
        table.add_row(name, "runtime", "", "[green]ok[/]" if check["passed"] else "[red]FAIL[/]", check["detail"])
    console.print(table)
    console.print("[green]PASSED[/]" if r["passed"] else "[red]FAILED[/]")
    if r.get("note"):
        console.print(f"[yellow]{r['note']}[/]")


def bench(console: Console, r: dict) -> None:
    run = r["run"]
    title = f"{r['model']} · {r['target']} · {r['precision']} on {r['device']} ({run['machine']}, {run['threads']} threads)"
    table = _table(title, "metric", "value")
    for key in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms"):
        table.add_row(key[:-3], f"{r[key]:.3f} ms")
    table.add_row("throughput", f"{r['throughput_per_s']:.1f} inferences/s (batch {r['batch']})")
    table.add_row("load time", f"{r['load_time_ms']:.0f} ms")
    table.add_row("peak RSS", f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else "?")
    table.add_row("model size", _mb(r["model_bytes"]))
    table.add_row("runs", f"{r['iters']} after {r['warmup']} warm-up")
    console.print(table)
    if r.get("note"):
        console.print(f"[yellow]{r['note']}[/]")


def profile(console: Console, r: dict) -> None:
    table = _table(f"per-layer profile on {r['device']}", "layer", "op", "ms", "share")
    total = r["total_ms"] or 1.0
    for layer in sorted(r["layers"], key=lambda x: -x["ms"])[:30]:
        table.add_row(layer["name"], layer["op"], f"{layer['ms']:.4f}", f"{100 * layer['ms'] / total:.1f}%")
    console.print(table)


def targets(console: Console, data: dict) -> None:
    table = _table("targets", "name", "backend", "arch / cpu", "precisions", "default device")
    for t in data["targets"]:
        table.add_row(t["name"], t["backend"], f"{t['arch']} {t['cpu']}".strip(), ",".join(t["precisions"]),
                      t["device"])
    console.print(table)
    for t in data["targets"]:
        flags = ", ".join(o["flag"] for o in t["options"])
        console.print(f"[bold]{t['name']}[/]: {t['description']}. Options: {flags}", highlight=False)


def key_values(console: Console, data: dict) -> None:
    table = _table("", "", "")
    for key, value in data.items():
        table.add_row(str(key), str(value))
    console.print(table)


def _fleet_summary(command: str, report: dict) -> str:
    if command == "verify":
        return "[green]PASSED[/]" if report["passed"] else "[red]FAILED[/]"
    if command == "bench":
        return (f"p50 {report['p50_ms']:.3f} ms, {report['throughput_per_s']:.1f}/s "
                f"({report['run']['machine']}, {report['run']['threads']} threads)")
    if command == "probe":
        return (f"{report['arch']} {report['cpu']}: {' '.join(report['features']) or 'no features'}; "
                f"suggests {report['suggested_target']}")
    return f"{len(report.get('layers', []))} layers, {report.get('total_ms', 0):.3f} ms"


def fleet(console: Console, data: dict) -> None:
    """One row per device: its result, or the one-line reason it failed."""
    table = _table(f"{data['command']} on {len(data['devices'])} devices", "device", "exit", "result", "note")
    for row in data["devices"]:
        report = row["report"]
        result = _fleet_summary(data["command"], report) if report else f"[red]{row['error']}[/]"
        emulated = " (emulated)" if report.get("emulated") else ""
        table.add_row(row["device"] + emulated, str(row["exit_code"]), result, report.get("note", ""))
    console.print(table)


def probe(console: Console, p: dict) -> None:
    table = _table(f"device {p['device']}" + (" (emulated)" if p["emulated"] else ""), "", "")
    memory = f"{p['memory_bytes'] / 2**30:.1f} GiB" if p.get("memory_bytes") else "?"
    rows = {"architecture": p["arch"], "CPU": p["cpu"], "ISA features": " ".join(p["features"]) or "none",
            "lacks": " ".join(p["missing_features"]) or "none", "cores": p["cores"], "memory": memory,
            "OS": p["os"], "Python": p["python"] + ("" if p["venv"] else " (no venv: wheels folder on its path)"),
            "runtimes": ", ".join(f"{k} {v}" for k, v in p["runtimes"].items()) or "none",
            "suggested target": p["suggested_target"]}
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)


def compress(console: Console, r: dict) -> None:
    """Original against compressed: sizes, cost, accuracy and latency per target, with ratios."""
    original, compressed, ratios = r["original"], r["compressed"], r["ratios"]
    table = _table(f"compressed {r['source']} -> {r['output']}", "", "original", "compressed", "ratio")
    rows = [("parameters", "parameters", lambda n: f"{n:,}"), ("MACs", "macs", lambda n: f"{n:,}"),
            ("file size", "bytes", _mb), ("zip size", "zip_bytes", _mb)]
    for label, key, show in rows:
        table.add_row(label, show(original[key]), show(compressed[key]), f"{ratios[key]:.2f}x smaller")
    if original["accuracy"] is not None:
        table.add_row(r["accuracy_measure"], f"{original['accuracy']:.2f}", f"{compressed['accuracy']:.2f}",
                      f"{ratios['accuracy_change_points']:+.2f} points")
    for target, ms in original["latency_ms"].items():
        table.add_row(f"p50 latency, {target} {r['precision']}", f"{ms:.3f} ms",
                      f"{compressed['latency_ms'][target]:.3f} ms", f"{ratios['speedup'][target]:.2f}x faster")
    console.print(table)
    for note in r["notes"]:
        console.print(f"[yellow]{note}[/]", highlight=False)


def comparison(console: Console, r: dict) -> None:
    emulated = " (emulated: timings prove only that it runs)" if r["emulated"] else ""
    measure = r.get("measure") or "accuracy"
    accuracy_header = "accuracy %" if measure.startswith("accuracy") else "agreement %"
    table = _table(f"{r['source']} on {r['device']}{emulated}", "", "target", "precision", "size", "p50 ms", "p90 ms",
                   "throughput /s", "peak MB", accuracy_header, "build s")
    chosen = r["choice"]["index"]
    for i, c in enumerate(r["candidates"]):
        mark = ("*" if c["pareto"] else "") + ("<" if i == chosen else "")
        f = c.get("figures")
        if f is None:
            table.add_row(mark, c["target"], c["precision"], f"[yellow]{c['status']}[/]: {c['reason']}",
                          *[""] * 6)
            continue
        accuracy = "" if f["accuracy"] is None else f"{f['accuracy']:.2f}"
        table.add_row(mark, c["target"], c["precision"] + "".join(f" {k}={v}" for k, v in c["flags"].items()),
                      _mb(f["size_bytes"]), f"{f['p50_ms']:.3f}", f"{f['p90_ms']:.3f}", f"{f['throughput_per_s']:.0f}",
                      "?" if f["peak_rss_mb"] is None else f"{f['peak_rss_mb']:.0f}", accuracy, f"{f['build_s']:.1f}")
    console.print(table)
    if r.get("baseline_accuracy") is not None:
        console.print(f"source model: {r['baseline_accuracy']:.2f} % ({measure} on {r['eval_data']})")
    console.print("* Pareto-optimal on latency, size and accuracy   < recommended: " + r["choice"]["why"])


def trial_line(number: int, c: dict) -> str:
    """One finished trial, as the tune progress bar shows it."""
    flags = " ".join(f"{k}={v}" for k, v in sorted(c["flags"].items()))
    f = c.get("figures")
    if f is None:
        return f"trial {number}: {c['precision']} {flags}: {c['status']}: {c['reason']}"
    accuracy = "" if f["accuracy"] is None else f", {f['accuracy']:.2f} %"
    return f"trial {number}: {c['precision']} {flags}: p50 {f['p50_ms']:.3f} ms, {_mb(f['size_bytes'])}{accuracy}"


def tuning(console: Console, r: dict) -> None:
    table = _table(f"study {r['study']} ({r['storage']})", "", "")
    table.add_row("trials", f"{r['trials']} in the study ({r['added']} added by this run)")
    if r["best"]:
        table.add_row("best", trial_line(-1, r["best"]).split(": ", 1)[1])
        table.add_row("build it", r["command"])
        table.add_row("config", r["config_file"])
    else:
        table.add_row("best", "no trial held the accuracy budget")
    table.add_row("results", r["results_file"])
    table.add_row("report", r["report_file"])
    console.print(table)
