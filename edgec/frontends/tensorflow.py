"""TensorFlow frontend: a SavedModel folder, a `.keras` file or a legacy `.h5` file, via tf2onnx.

Each source becomes one tf.function with a fixed input signature (the user's `--input-shape`
where given), which tf2onnx converts. The interface stays NHWC as in Keras; tf2onnx's own
transpose optimizer leaves one Transpose at each image input (NHWC -> NCHW for the convs).
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx_ir as ir

from edgec.errors import InputError, UnsupportedError, require
from edgec.system import first_line
from edgec.ir import InputSpec

OPSET = 17
SIGNATURE = "serving_default"


def load(source: str, specs: list[InputSpec]) -> ir.Model:
    """Convert `source` to the common IR; input names are Keras's / the signature's."""
    # Quiet TF's C++ start-up logs; oneDNN's custom kernels only matter when running, not converting.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    tf = require("tensorflow", "tf")
    tf2onnx = require("tf2onnx", "tf")
    path = Path(source)
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    shapes = {s.name: s.shape for s in specs}
    if path.is_dir():
        function, signature = _saved_model(tf, path, shapes)
    else:
        function, signature = _keras(tf, path, shapes)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    except Exception as exc:
        raise UnsupportedError(f"tf2onnx could not convert {path}: {type(exc).__name__}: {first_line(exc)}") from exc
    model = ir.serde.deserialize_model(proto)
    _name_batch_dims(model)
    return model


def _name_batch_dims(model: ir.Model) -> None:
    """tf2onnx names unknown dims unk__N; a leading one is the batch, so say so."""
    for value in [*model.graph.inputs, *model.graph.outputs]:
        if value.shape is not None and len(value.shape) and not isinstance(value.shape[0], int):
            value.shape = ir.Shape(["batch", *list(value.shape)[1:]])


def _keras(tf, path: Path, shapes: dict):
    """A Keras 3 model (.keras, or a legacy .h5) called in inference mode, outputs named output_N."""
    keras = require("keras", "tf")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)  # no Lambda bytecode
    except Exception as exc:
        raise InputError(f"{path} is not a Keras model that loads here ({first_line(exc)})") from exc
    signature = [_spec(tf, t.name, t.shape, t.dtype, shapes) for t in model.inputs]

    def call(*inputs):
        outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        return {f"output_{i}": t for i, t in enumerate(tf.nest.flatten(outputs))}

    return tf.function(call, input_signature=signature), signature


def _saved_model(tf, path: Path, shapes: dict):
    """A SavedModel's serving signature, called with keyword inputs as it expects."""
    if not (path / "saved_model.pb").exists():
        raise InputError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
    try:
        imported = tf.saved_model.load(str(path))
    except Exception as exc:
        raise InputError(f"{path} is not a SavedModel that loads here ({first_line(exc)})") from exc
    served = imported.signatures.get(SIGNATURE)
    if served is None:
        found = ", ".join(imported.signatures) or "none"
        raise InputError(f"{path} has no '{SIGNATURE}' signature (it has: {found}); export it with one")
    _, kwargs = served.structured_input_signature
    names = list(kwargs)
    signature = [_spec(tf, n, kwargs[n].shape, kwargs[n].dtype, shapes) for n in names]

    def call(*inputs):  # through `imported`, which owns the variables and must stay alive
        return imported.signatures[SIGNATURE](**dict(zip(names, inputs)))

    return tf.function(call, input_signature=signature), signature


def _spec(tf, name: str, shape, dtype, shapes: dict):
    """The input's TensorSpec, at the user's --input-shape where given (else the model's own)."""
    shape = tuple(shape)
    given = shapes.get(name, shape)
    if len(given) != len(shape):
        raise InputError(f"--input-shape {name}: gives {len(given)} dimensions, the model's input has "
                         f"{len(shape)} ({list(shape)})")
    return tf.TensorSpec(given, dtype, name=name)

