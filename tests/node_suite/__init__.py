"""The ONNX node-test conformance suite: edgec's yardstick on every target.

- cases.py: regenerate the single-node tests from the installed onnx package's generators, cache
  them, and make their second form (parameter inputs as constants);
- selection.py: the committed suite (suite.txt): the tests plain onnxruntime passes;
- runner.py: build and run each test in a forked child and judge it (passed, wrong, crash, refused);
- suite.py: one target's run, its claimed operators and its counts;
- results.py: benchmarks/results/node_suite.{json,md};
- __main__.py: `python -m tests.node_suite TARGET` prints the failures with their reasons.

It lives with the tests, not in the edgec package: it needs onnx's test generators and every
backend, and users of edgec never run it. What edgec itself provides is the data it checks:
each backend's claimed operators (`edgec targets --json`).
"""
