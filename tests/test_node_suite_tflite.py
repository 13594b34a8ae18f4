"""The ONNX node suite on tflite-arm (tests/test_node_suite.py runs the other targets): a file of its
own, so that make test's two workers (pytest-xdist, one file per worker) run its whole run beside
onnxruntime's instead of after it."""
from __future__ import annotations

import pytest

from test_node_suite import check_target


@pytest.mark.slow
def test_node_suite_on_tflite_arm():
    check_target("tflite-arm")
