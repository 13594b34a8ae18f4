"""The compressed torch module back to the common IR, with the source model's interface."""
from __future__ import annotations

import onnx_ir as ir

from edgec.compress.trainable import Trainable


def to_ir(module, trainable: Trainable) -> ir.Model:
    """Export with edgec's torch frontend (torch.onnx.export, dynamo); the inputs and outputs take the
    source model's names, and a free batch dimension stays free."""
    from edgec.frontends import torch as torch_frontend

    model = torch_frontend.export(module.eval(), trainable.example(), "the compressed model",
                                  dynamic_batch=trainable.dynamic_batch)
    source = trainable.source_model.graph
    for values, names in ((model.graph.inputs, trainable.input_names), (model.graph.outputs, [v.name for v in source.outputs])):
        for value, name in zip(values, names):
            value.name = name
    return model
