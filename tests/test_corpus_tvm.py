"""The corpus on tvm-x86 in fp32: each model builds and matches the original on its real inputs, or,
where it needs an operator TVM 0.27's ONNX importer lacks (LSTM/GRU/RNN, Loop/Scan, If), is refused
in one line."""
from __future__ import annotations

import pytest

from corpus_checks import assert_fp32_faithful, corpus_params


@pytest.mark.slow
@pytest.mark.parametrize("model", corpus_params())
def test_fp32_builds_faithfully_on_tvm(model, tmp_path):
    assert_fp32_faithful(model, "tvm-x86", tmp_path)
