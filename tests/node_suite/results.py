"""The suite's results file: per-target counts and failure classes, in JSON and markdown.

Each target's run replaces that target's entry and keeps the others, so the targets can be run
one at a time. The README cites benchmarks/results/node_suite.md.
"""
from __future__ import annotations

import collections
import json
import re

from .cases import ROOT, SUITE_FILE, read_list
from .runner import CRASH, REFUSED, WRONG
from .suite import STATUSES, TargetReport

RESULTS = ROOT / "benchmarks" / "results"
JSON_FILE, MARKDOWN_FILE = RESULTS / "node_suite.json", RESULTS / "node_suite.md"


def failure_class(reason: str) -> str:
    """A reason with its test-specific parts (numbers, names, shapes) blanked, to group failures."""
    text = re.sub(r"'[^']*'", "'…'", reason)
    text = re.sub(r"(input|output): \w+", r"\1: …", text)
    text = re.sub(r"\[[\d, ]*\]", "[…]", text)
    text = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", text)
    return text[:160]


def entry(report: TargetReport) -> dict:
    """One target's record. Each form is its status, or [status, reason] where the reason tells
    something: wrong results, crashes and refusals of claimed operators (the rest are 'not claimed')."""
    outcomes = collections.defaultdict(dict)
    for o in report.outcomes:
        telling = o.status in (WRONG, CRASH) or (o.status == REFUSED and o.op_type in report.claimed)
        outcomes[o.test][o.form] = [o.status, o.reason.replace(f"{ROOT}/", "")] if telling else o.status
    return {
        "tests": len(report.by_test()), "forms": len(report.outcomes), "sampled": report.sampled,
        "counts": report.counts(), "claimed_counts": report.counts(claimed_only=True),
        "claimed_operators": len(report.claimed), "wall_seconds": report.seconds,
        "cpu_seconds": report.cpu_seconds, "outcomes": dict(outcomes),
    }


def record(report: TargetReport) -> dict:
    """Merge one target's run into the results files; return everything recorded. Targets run in
    parallel test workers, so the merge holds a lock on the results folder."""
    import fcntl

    import onnx
    import onnxruntime

    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / ".node_suite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(JSON_FILE.read_text()) if JSON_FILE.exists() else {"targets": {}}
        data.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__, suite_tests=len(read_list(SUITE_FILE)))
        previous = data["targets"].get(report.target)
        if report.sampled and previous and not previous["sampled"]:
            return data  # a sample never replaces a whole run's record
        data["targets"][report.target] = entry(report)
        data["targets"] = dict(sorted(data["targets"].items()))
        JSON_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        MARKDOWN_FILE.write_text(markdown(data))
    return data


def markdown(data: dict) -> str:
    lines = [
        "# ONNX node suite",
        "",
        f"The {data['suite_tests']} single-node tests that plain onnxruntime {data['onnxruntime']} passes, of the 96",
        f"operators in `tests/node_suite/operators.txt`, regenerated from onnx {data['onnx']}'s own generators",
        "(`tests/node_suite/suite.txt`). Each test is built with edgec in fp32 for the target, as shipped and",
        "with its parameter inputs as constants, and the artifact's harness runs the test's inputs. A test",
        "*passed* when a form passed and no form was wrong or crashed; *refused* when every form was refused",
        "in one line; *wrong* when an artifact's outputs differ from the test's (rtol 1e-3, atol 1e-7); *crash*",
        "for anything else (a traceback, a signal, a multi-line refusal, a harness that cannot run its artifact).",
        "A target is held to the tests of the operators it claims (`edgec targets --json`). Wall seconds",
        "depend on the machine's load (two forked builds at a time); CPU seconds are the suite's cost.",
        "Written by `tests/test_node_suite.py` (make test) and `python -m tests.node_suite --write TARGET`.",
        "",
        "| target | tests | passed | refused | wrong | crash | claimed-operator tests: passed / wrong / crash "
        "| wall / CPU seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, t in data["targets"].items():
        c, k = t["counts"], t["claimed_counts"]
        tests = f"{t['tests']}" + (" (sample: first test of each operator)" if t["sampled"] else "")
        lines.append(f"| {name} | {tests} | " + " | ".join(str(c[s]) for s in STATUSES)
                     + f" | {sum(k.values())}: {k['passed']} / {k['wrong']} / {k['crash']}"
                     + f" | {t['wall_seconds']:.0f} / {t['cpu_seconds']:.0f} |")
    for name, t in data["targets"].items():
        classes = failure_classes(t["outcomes"])
        if not classes:
            continue
        lines += ["", f"## {name}: wrong results and crashes by class (forms)", "",
                  "| forms | status | class | tests, e.g. |", "| --- | --- | --- | --- |"]
        for (status, cls), tests in classes:
            examples = ", ".join(f"`{n}`" for n in sorted(set(tests))[:3])
            lines.append(f"| {len(tests)} | {status} | {cls.replace('|', '/')} | {examples} |")
    return "\n".join(lines) + "\n"


def failure_classes(outcomes: dict) -> list[tuple[tuple[str, str], list[str]]]:
    """(status, class) -> the tests of every wrong or crashed form, most frequent first."""
    classes = collections.defaultdict(list)
    for test, forms in outcomes.items():
        for form in forms.values():
            if isinstance(form, list) and form[0] in (WRONG, CRASH):
                classes[(form[0], failure_class(form[1]))].append(test)
    return sorted(classes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
