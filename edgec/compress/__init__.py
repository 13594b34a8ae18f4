"""edgec compress: structured and unstructured pruning, low-rank factorization and knowledge distillation.

A source-to-source step: a source model in, a smaller ONNX model and a measured report out; the
output feeds `edgec build`. `plan.py` says what to do, `pipeline.py` does it, `report.py` measures it.
"""
