"""What the corpus tests assert, shared by test_corpus.py and test_corpus_tvm.py (one file per target
group, so pytest-xdist's --dist loadfile spreads the builds over the workers)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import ROOT, edgec

sys.path.insert(0, str(ROOT))

from models.corpus.measure import artifact_outputs, compare  # noqa: E402
from models.corpus.reference import reference_outputs  # noqa: E402
from models.corpus.registry import MODELS, CorpusModel, FailureClass  # noqa: E402

# TVM 0.27's ONNX importer has no converter for these: such a model may be refused in one line.
TVM_UNSUPPORTED = {FailureClass.RECURRENT_OPS, FailureClass.CONTROL_FLOW}
TOLERANCE = 1e-4  # of the original's output range


def corpus_params():
    return [pytest.param(m, id=m.name) for m in MODELS]


def require_fetched(model: CorpusModel) -> None:
    missing = [p for p in (model.onnx_path, model.inputs_path) if not p.exists()]
    assert not missing, f"{', '.join(map(str, missing))} missing: run `make corpus`"


def assert_fp32_faithful(model: CorpusModel, target: str, tmp_path: Path) -> None:
    """`edgec build` in fp32 exits 0, and the artifact's outputs on the model's real inputs are within
    1e-4 of the original's output range with the task fidelity at its bar."""
    require_fetched(model)
    out = tmp_path / "artifact"
    proc = edgec("build", model.onnx_path, "-t", target, "-o", out, "--precision", "fp32", *model.build_flags())
    if target.startswith("tvm") and proc.returncode == 2 and model.classes & TVM_UNSUPPORTED:
        messages = [line for line in proc.stderr.splitlines() if line.startswith("edgec:")]
        assert len(messages) == 1 and "Traceback" not in proc.stderr, f"a refusal is one line:\n{proc.stderr[-2000:]}"
        return
    assert proc.returncode == 0, f"edgec build exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    result = compare(model, reference_outputs(model), artifact_outputs(model, out))
    tolerance = model.runtime_tolerance.get(target, (TOLERANCE, ""))[0]
    assert result.error_over_range <= tolerance, \
        f"{result.worst_output}: max error {result.error_over_range:.2e} of the output range"
    assert result.task >= model.fidelity.bar, f"{model.fidelity.measure}: {result.task:.4f} < {model.fidelity.bar}"
