"""edgec compress: the mechanics of each step on real models, the report's numbers, and its refusals."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import DIGITS, MOBILENET, edgec
from test_cli import assert_one_line_error

from edgec import ir as eir
from edgec.compress import distill, lowrank, structured, trainable, training, unstructured
from edgec.compress.plan import Distill, Prune
from edgec.errors import InputError
from edgec.ir import runtime


@pytest.fixture(scope="module")
def digits_sets(tmp_path_factory, digits_data) -> dict:
    """The digits training inputs without labels (as users usually have them) and the labelled test set."""
    from sklearn.datasets import load_digits

    images = (load_digits().images.astype(np.float32) / 16.0)[:, None]
    train_rows = np.setdiff1d(np.arange(len(images)), digits_data["test_indices"])
    folder = tmp_path_factory.mktemp("compress-data")
    np.savez(folder / "train.npz", input=images[train_rows])
    np.savez(folder / "test.npz", input=digits_data["x_test"], labels=digits_data["y_test"])
    return {"train": folder / "train.npz", "test": folder / "test.npz", "x_train": images[train_rows],
            "x_test": digits_data["x_test"], "y_test": digits_data["y_test"]}


@pytest.fixture
def digits_module():
    return trainable.load(str(DIGITS / "digits_cnn.onnx"))


class ResidualConcat(nn.Module):
    """A stem, two branches joined by a concatenation (one with a depthwise conv), a residual add back
    onto the stem, and a classifier: every kind of channel tie that pruning must keep consistent."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.left = nn.Conv2d(16, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.right = nn.Conv2d(16, 8, 1)
        self.fuse = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        stem = self.stem(x)
        joined = torch.cat([self.left(stem), self.right(self.depthwise(stem))], 1)
        out = torch.relu(stem + self.fuse(joined))
        return self.classifier(out.mean((2, 3)))


def test_channel_pruning_keeps_residual_concat_and_depthwise_consistent(digits_data):
    torch.manual_seed(0)
    model = ResidualConcat().eval()
    x = torch.from_numpy(digits_data["x_test"][:16])
    record = structured.prune_channels(model, (x[:1],), Prune("channels", 0.5), "l1", (), None)
    assert model(x).shape == (16, 10)  # still runs, same interface
    assert model.stem[0].weight.shape == (8, 1, 3, 3)
    assert model.left.weight.shape == (4, 8, 3, 3) and model.right.weight.shape == (4, 8, 1, 1)
    assert model.depthwise.weight.shape == (8, 1, 3, 3) and model.depthwise.groups == 8
    assert model.fuse[0].num_features == 8  # the BatchNorm after the concatenation: 4 + 4
    assert model.fuse[2].weight.shape == (8, 8, 1, 1)  # tied to the stem through the residual add
    assert model.classifier.weight.shape == (10, 8)
    assert record.kept_layers == ["classifier"] and record.channels_after < record.channels_before


@pytest.mark.slow
def test_mobilenet_pruning_shrinks_every_block_and_batchnorm_reestimation_recovers(photos):
    """MobileNetV2 from ONNX through onnx2torch: 30 % of each layer, residual blocks still add up;
    re-estimating BatchNorm on the calibration crops (no labels) brings predictions back toward the original."""
    source = trainable.load(str(MOBILENET / "mobilenet_v2.onnx"))
    layers = structured.prunable_layers(source.module)
    widths = {name: structured._out_channels(m) for name, m in layers.items()}
    structured.prune_channels(source.module, source.example(), Prune("channels", 0.3), "l1", (), None)
    after = {name: structured._out_channels(m) for name, m in layers.items()}
    shrunk = [n for n in widths if after[n] < widths[n]]
    assert len(shrunk) == len(widths) - 1  # all but the classifier
    assert all(after[n] >= int(0.7 * widths[n]) for n in shrunk)
    with np.load(MOBILENET / "calibration.npz") as data:
        calib = training.Dataset([data["input"]], None, "calibration")
    x = training.Dataset([photos["x"]], None, "photos")
    reference = photos["logits"]
    before = training.predict(source.module, x)
    assert before.shape == reference.shape
    training.reestimate_batchnorm(source.module, calib)
    recovered = training.predict(source.module, x)
    correlation = lambda logits: np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(logits, reference)])  # noqa: E731
    assert correlation(recovered) > correlation(before) + 0.1  # measured: 0.04 -> 0.15; distillation does the rest


def _logits(model, x):
    """The digits model's logits for a batch of images (its batch is dynamic: one run)."""
    return runtime.session(model).run(["logits"], {"input": x})[0]


def test_svd_is_exact_at_full_rank_in_torch_and_in_onnx(digits_module, digits_data):
    x = digits_data["x_test"][:64]
    module = digits_module.module.eval()
    reference = module(torch.from_numpy(x)).detach().numpy()
    for name, layer in structured.prunable_layers(module).items():
        full = min(layer.weight.shape[0], layer.weight[0].numel())
        lowrank._replace(module, name, lowrank.split_layer(layer, full))
    assert np.abs(module(torch.from_numpy(x)).detach().numpy() - reference).max() <= 1e-4

    model = eir.load(DIGITS / "digits_cnn.onnx")
    original = _logits(model, x)
    for node in [n for n in model.graph if n.op_type in ("Conv", "Gemm")]:
        lowrank.split_node(model.graph, node, min(lowrank._constant_matrix(node).shape))
    assert sum(n.op_type in ("Conv", "Gemm") for n in model.graph) == 8
    factorized = _logits(model, x)
    assert np.abs(factorized - original).max() <= 1e-4


def test_low_rank_on_the_onnx_graph_keeps_accuracy(digits_data, digits_accuracy):
    model = eir.load(DIGITS / "digits_cnn.onnx")
    done = lowrank.factorize_graph(model, 0.9)
    assert done and all(f.macs_per_position_after < f.macs_per_position_before for f in done)
    assert "/classifier/Gemm" not in [f.layer for f in done]  # the output layer stays whole
    logits = _logits(model, digits_data["x_test"])
    assert 100 * (np.mean(logits.argmax(1) == digits_data["y_test"]) - digits_accuracy) >= -0.5
    assert lowrank.factorize_graph(eir.load(DIGITS / "digits_cnn.onnx"), 1.0) == []  # full rank saves nothing


def _pruned_student(digits_module, train):
    student = digits_module.module
    teacher = copy.deepcopy(student).eval()
    with training.seeded(0):
        structured.prune_channels(student, digits_module.example(), Prune("channels", 0.5), "l1", (), None)
    training.reestimate_batchnorm(student, train)
    return teacher, student


def test_distillation_raises_teacher_agreement_and_is_deterministic(digits_sets):
    train = training.Dataset([digits_sets["x_train"]], None, "train")
    test = training.Dataset([digits_sets["x_test"]], None, "test")
    config = Distill("train.npz", epochs=3)
    weights, agreements = [], []
    for _ in range(2):
        teacher, student = _pruned_student(trainable.load(str(DIGITS / "digits_cnn.onnx")), train)
        reference = training.predict(teacher, test)
        before = training.agreement(training.predict(student, test), reference)
        record = distill.distill(teacher, student, train, config, seed=0)
        agreements.append((before, training.agreement(training.predict(student, test), reference)))
        weights.append({k: v.clone() for k, v in student.state_dict().items()})
    (before, after), _ = agreements
    assert after > before + 0.05 and after >= 0.95, agreements
    assert record.teacher_agreement_after > record.teacher_agreement_before and not record.labels_used
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_magnitude_pruning_survives_training_and_is_made_permanent(digits_module, digits_sets):
    train = training.Dataset([digits_sets["x_train"]], None, "train")
    teacher = copy.deepcopy(digits_module.module).eval()
    spec = Prune("weights", 0.7)
    masked = unstructured.zero_weights(digits_module.module, spec, ())
    distill.distill(teacher, digits_module.module, train, Distill("train.npz", epochs=1), seed=0)
    record = unstructured.make_permanent(masked, spec)
    assert not any("weight_orig" in name for name, _ in digits_module.module.named_parameters())
    for layer in masked:
        assert float((layer.weight == 0).float().mean()) >= 0.69
    assert record.zeros / record.weights >= 0.69


@pytest.mark.parametrize("importance", ["bn", "taylor"])
def test_other_importances_prune_too(digits_module, digits_sets, importance):
    data = training.Dataset([digits_sets["x_train"][:64]], None, "train")
    record = structured.prune_channels(digits_module.module, digits_module.example(), Prune("channels", 0.25),
                                       importance, (), data)
    assert record.channels_after < record.channels_before and record.importance == importance


@pytest.mark.parametrize("spec", [Prune("channels", 0.95), Prune("channels", 0.9, "global")])
def test_a_prune_that_would_empty_a_layer_is_refused(spec):
    """Torch-Pruning would leave such a layer whole without a word; edgec names it instead. Per layer, 0.95
    of 8 channels keeps int(0.4) = 0; ranked globally, the concatenation's left branch falls below the
    threshold whole."""
    torch.manual_seed(0)
    model = ResidualConcat().eval()
    with pytest.raises(InputError, match=r"would remove the whole layer \S+: lower the ratio, or pass --keep-layer"):
        structured.prune_channels(model, (torch.zeros(1, 1, 8, 8),), spec, "l1", (), None)


def test_keep_layer_stays_whole_and_unknown_names_are_refused(digits_module):
    layers = list(structured.prunable_layers(digits_module.module))
    kept = layers[0]
    structured.prune_channels(digits_module.module, digits_module.example(), Prune("channels", 0.5), "l1", (kept,), None)
    assert structured._out_channels(structured.prunable_layers(digits_module.module)[kept]) == 16
    with pytest.raises(InputError, match="not a prunable layer"):
        structured.prune_channels(digits_module.module, digits_module.example(), Prune("channels", 0.5), "l1",
                                  ("conv9",), None)


# --- the command line, end to end -------------------------------------------------------------------

def _report(path):
    return json.loads(path.with_suffix(".compress.json").read_text())


@pytest.mark.slow
def test_cli_channel_pruning_with_distillation_halves_parameters_within_a_point(tmp_path, digits_sets):
    out = tmp_path / "small.onnx"
    edgec("compress", DIGITS / "digits_cnn.onnx", "-o", out, "--prune", "channels:0.5", "--distill",
          "--train-data", digits_sets["train"], "--epochs", "10", "--eval", digits_sets["test"], check=True)
    report = _report(out)
    assert report["ratios"]["parameters"] >= 2.0
    assert report["ratios"]["accuracy_change_points"] >= -1.0
    assert report["steps"]["distill"]["labels_used"] is False
    model = eir.load(out)  # the source's interface, batch still free
    assert [v.name for v in model.graph.inputs] == ["input"] and [v.name for v in model.graph.outputs] == ["logits"]
    assert not isinstance(model.graph.inputs[0].shape[0], int)


@pytest.mark.slow
def test_cli_magnitude_pruning_shrinks_the_zip_and_says_dense_kernels_gain_nothing(tmp_path, digits_sets):
    out = tmp_path / "sparse.onnx"
    proc = edgec("compress", DIGITS / "digits_cnn.onnx", "-o", out, "--prune", "weights:0.7", "--eval",
                 digits_sets["test"], "--json", "-", check=True)
    report = json.loads(proc.stdout)
    assert report == _report(out)
    assert report["ratios"]["zip_bytes"] >= 2.0
    assert report["compressed"]["parameters"] == pytest.approx(report["original"]["parameters"], rel=0.01)  # zeros count
    assert any("dense kernels gain no speed" in note for note in report["notes"])


@pytest.mark.slow
def test_cli_pytorch_source_and_build_hook(tmp_path, digits_files):
    """A model.py:Class is pruned directly; `edgec build --prune` records the step in the manifest."""
    out = tmp_path / "torch.onnx"
    edgec("compress", DIGITS / "model.py:DigitsCNN", "--weights", DIGITS / "digits_cnn.pth", "--input-shape",
          "x:1,1,8,8", "-o", out, "--prune", "channels:0.5", "--calibration", digits_files["calib"], "--trust-code",
          check=True)
    assert [v.name for v in eir.load(out).graph.inputs] == ["x"]
    assert _report(out)["steps"]["batchnorm_reestimated"] == 3

    artifact = tmp_path / "artifact"
    edgec("build", DIGITS / "digits_cnn.onnx", "-o", artifact, "--prune", "channels:0.5", "--calibration",
          digits_files["calib"], "--eval", digits_files["eval"], check=True)
    manifest = json.loads((artifact / "edgec.json").read_text())
    assert manifest["verification"]["result"]["passed"]
    compression = manifest["compression"]
    assert compression["plan"]["prune"] == {"kind": "channels", "amount": 0.5, "scope": "layer"}
    assert compression["ratios"]["parameters"] >= 2.0 and compression["compressed"]["accuracy"] is not None


@pytest.fixture(scope="module")
def quantized_digits(tmp_path_factory):
    """An int8 model edgec built: real, and made of operators onnx2torch cannot train."""
    artifact = tmp_path_factory.mktemp("q") / "int8"
    edgec("build", DIGITS / "digits_cnn.onnx", "-o", artifact, "--precision", "int8", "--calibration",
          DIGITS / "calibration.npz", check=True)
    return artifact / "model.onnx"


@pytest.mark.parametrize("case", ["untrainable", "whole_layer", "emptied_layer", "train_shape", "no_train_data"])
def test_refusals_are_one_line_exit_2_and_write_nothing(case, tmp_path, digits_sets, request):
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=np.zeros((8, 1, 9, 9), np.float32))
    source = request.getfixturevalue("quantized_digits") if case == "untrainable" else DIGITS / "digits_cnn.onnx"
    args = {"untrainable": ["--prune", "channels:0.5"],
            "whole_layer": ["--prune", "channels:1.0"],
            "emptied_layer": ["--prune", "channels:0.95"],
            "train_shape": ["--prune", "channels:0.5", "--distill", "--train-data", bad],
            "no_train_data": ["--distill"]}[case]
    words = {"untrainable": ["cannot be made trainable", "QuantizeLinear"], "whole_layer": ["whole layers"],
             "emptied_layer": ["would remove the whole layer", "--keep-layer"],
             "train_shape": ["[8, 1, 9, 9]", "expected"], "no_train_data": ["--train-data"]}[case]
    out = tmp_path / "out" / "small.onnx"
    assert_one_line_error(edgec("compress", source, "-o", out, *args), *words)
    assert not out.parent.exists() or not any(out.parent.iterdir())


STUDENT = '''
from torch import nn


class TinyDigits(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        return self.body(x)


class WrongWidth(TinyDigits):
    def __init__(self):
        super().__init__(classes=5)
'''


def test_a_users_own_student_learns_from_the_teacher_and_must_fit_its_outputs(tmp_path, digits_module, digits_sets):
    from edgec.compress import pipeline
    from edgec.compress.plan import Plan

    (tmp_path / "student.py").write_text(STUDENT)
    train = training.Dataset([digits_sets["x_train"]], None, "train")
    test = training.Dataset([digits_sets["x_test"]], None, "test")
    plan = Plan(distill=Distill(str(digits_sets["train"]), epochs=8, temperature=1.0, learning_rate=1e-2,
                                student=f"{tmp_path}/student.py:TinyDigits"))
    with training.seeded(0):
        student = pipeline._student(plan, digits_module)
    reference = training.predict(digits_module.module, test)
    record = distill.distill(digits_module.module, student, train, plan.distill, seed=0)
    after = training.agreement(training.predict(student, test), reference)
    assert after >= record.teacher_agreement_before + 0.5 and after >= 0.75, (record, after)
    wrong = Plan(distill=Distill("train.npz", student=f"{tmp_path}/student.py:WrongWidth"))
    with pytest.raises(InputError, match=r"outputs \[1, 5\], the source model \[1, 10\]"):
        pipeline._student(wrong, digits_module)
