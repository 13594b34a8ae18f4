"""Run the ONNX node suite on targets and print every wrong result and crash with its reason.

    python -m tests.node_suite onnxruntime tflite-arm       # counts, then one line per failure
    python -m tests.node_suite tvm-x86 --whole              # TVM on the whole suite, not the sample
    python -m tests.node_suite tflite-arm --tests test_add test_gemm_alpha
    python -m tests.node_suite openvino-cpu --write         # also record benchmarks/results/node_suite.*
    python -m tests.node_suite --select                     # rewrite suite.txt from plain onnxruntime

Run it from the repository root with the venv's python. Exit status 1 when a test of a claimed
operator is wrong or crashes.
"""
from __future__ import annotations

import argparse
import sys

from . import results, selection, suite
from .runner import PASSED, REFUSED


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.node_suite", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"targets to run (default: none; the suite's: {', '.join(suite.TARGETS)})")
    parser.add_argument("--tests", nargs="+", metavar="NAME", help="run only these tests")
    parser.add_argument("--whole", action="store_true", help="run the whole suite on sampled targets (tvm-x86, openvino-cpu)")
    parser.add_argument("--workers", type=int, default=2, help="forked builds at a time (default 2)")
    parser.add_argument("--refusals", action="store_true", help="also print every refusal")
    parser.add_argument("--write", action="store_true", help="record the results in benchmarks/results/node_suite.*")
    parser.add_argument("--select", action="store_true", help="rewrite suite.txt: the tests plain onnxruntime passes")
    args = parser.parse_args(argv)
    if args.select:
        names = selection.write_suite()
        print(f"wrote {len(names)} tests to {selection.SUITE_FILE}")
    failed = False
    for target in args.targets:
        report = suite.run_target(target, args.tests, args.workers, args.whole)
        counts = report.counts()
        print(f"{target}: {len(report.by_test())} tests ({len(report.outcomes)} forms) in {report.seconds:.0f} s "
              f"(CPU {report.cpu_seconds:.0f} s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for outcome in report.outcomes:
            if outcome.status != PASSED and (args.refusals or outcome.status != REFUSED):
                claimed = "" if outcome.op_type in report.claimed else " (operator not claimed)"
                print(f"  {outcome.status:<7} {outcome.test} [{outcome.form}]{claimed}: {outcome.reason}")
        failed = failed or bool(report.failures())
        if args.write:
            results.record(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
