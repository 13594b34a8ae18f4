"""What every backend provides: op coverage, lowering, and the runtime its harness needs.

A backend module must import its runtime lazily (inside `lower`), because `edgec inspect`
asks every backend for its coverage without wanting to load OpenVINO, TVM or LiteRT.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx_ir as ir

from edgec.package.harness.manifest import ComparisonPolicy, RuntimeConfig, SchemeChoice, Target, TensorSpec

STANDARD_DOMAINS = ("", "ai.onnx")


def standard_operators() -> frozenset[str]:
    """Every operator of the standard ONNX domain that the installed onnx defines."""
    import onnx.defs

    return frozenset(s.name for s in onnx.defs.get_all_schemas() if s.domain == "" and not s.deprecated)


@functools.cache
def installed_version(distribution: str) -> str:
    """The installed release of `distribution`, looked up once per process: each lookup scans every
    installed package's metadata (7-13 ms here), and a build asks for its runtime's three times."""
    from importlib.metadata import version

    return version(distribution)


@dataclass(frozen=True)
class UnsupportedOp:
    """One node a backend cannot take, and why."""

    op_type: str
    node: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.op_type} (node '{self.node}')" + (f": {self.reason}" if self.reason else "")


@dataclass
class BuildContext:
    """Everything a backend may need to lower one model."""

    target: Target
    precision: str
    out_dir: Path
    calibration: Any = None  # quantize.data.CalibrationData, already checked against the model
    options: Any = None  # the values of the options the target takes (edgec.options.resolve): options.io_layout
    float_model: ir.Model | None = None  # the optimized float model, when `model` is a QDQ graph
    judge: Any = None  # quantize.fallback.PolicyJudge: verifies what a backend chooses by measuring while lowering

    def __post_init__(self):
        if self.options is None or isinstance(self.options, dict):
            from edgec import options

            self.options = options.resolve(self.target, self.options or {})


@dataclass
class Lowered:
    """What a backend wrote into the artifact folder, and how the artifact is to be run and judged."""

    model_files: list[str]  # paths relative to the artifact; the first one is the model the harness loads
    inputs: list[TensorSpec]  # the artifact's interface (the build adds each batch axis)
    outputs: list[TensorSpec]
    config: RuntimeConfig  # what the backend built, and what its harness adapter needs
    host_policy: ComparisonPolicy | None = None  # how closely a device must match the build host, if looser
    host_simulated: bool = False  # the build host cannot run the runtime: it verifies `run.py --simulate`
    choice: SchemeChoice | None = None  # what the backend measured and chose while lowering (OpenVINO's float precision)


class Backend:
    """Base class: subclasses set the class attributes and implement `lower`.

    Made for one target (or none, to ask about the backend alone): a target may list the runtime's
    operators (`operators`) and the runtime release its device brings (`runtime_version`).
    """

    name = ""
    runtime = ""  # the pip distribution the harness imports
    session = ""  # "rt_module:SessionClass" in edgec/package/harness/, copied into the artifact
    supported_ops: frozenset[str] | None = None  # None: every standard ONNX operator
    min_opset = 1  # older models are converted to this opset first (an importer that knows only newer forms)

    def __init__(self, target: Target | None = None):
        self.target = target
        if target is not None and target.operators:
            self.supported_ops = frozenset(target.operators)

    def quantizes_itself(self, options) -> bool:
        """True when, for these options, the backend quantizes from ctx.calibration on its own."""
        return False

    def int8_opener(self, model: ir.Model):
        """A callable that compiles the QDQ graph `model` as the artifact will, with the runtime's int8
        kernels on one thread, into a runner (feed -> outputs), anew at each call: the build measures
        int8 candidates with several compilations of each. None: this backend's candidates cannot be
        measured on the build host."""
        return None

    def int8_runner(self, model: ir.Model):
        """One compilation of `int8_opener` (None where there is none): the verification policy judges it."""
        opener = self.int8_opener(model)
        return opener() if opener is not None else None

    def own_int8(self, model: ir.Model, target: Target, calibration, options, candidates: dict) -> list:
        """The backend's own int8 engines (quantize.choose.Engine) that compete with edgec's QDQ graph
        under these options, each made of the float `model` by one of the scheme `candidates` (name ->
        Scheme: those that fit this model; empty: the target's one scheme)."""
        return []

    def given_int8(self, model: ir.Model, scheme, calibration, options):
        """The backend's own int8 engine (quantize.choose.Engine) by the int8 `scheme` (a quantize.qdq.Scheme: the
        target's, or the candidate these options name) where they have it quantize (`quantizes_itself`), for
        the build to verify before lowering; None where it has none."""
        return None

    def qdq_options(self) -> dict:
        """The option values that make `lower` take edgec's QDQ graph where the backend has engines of its own."""
        return {}

    def requirements(self, target: Target) -> list[str]:
        """pip lines the device needs to run the harness."""
        return ["numpy>=1.24", self.requirement()]

    def requirement(self) -> str:
        """The pip line of the runtime the artifact expects."""
        return f"{self.runtime}=={self.runtime_version()}"

    def runtime_version(self) -> str:
        """The target's runtime release where it names one, else the one installed here."""
        return self.target.runtime_version if self.target and self.target.runtime_version else \
            installed_version(self.runtime)

    def claimed_operators(self) -> list[str]:
        """The standard ONNX operators this backend claims, judged by operator type alone.

        `edgec targets --json` lists them, and the ONNX node suite holds the backend to them: every
        node test of a claimed operator must pass or be refused in one line, never be wrong or crash.
        """
        return sorted(self.supported_ops if self.supported_ops is not None else standard_operators())

    def unsupported(self, model: ir.Model) -> list[UnsupportedOp]:
        """Nodes this backend cannot lower; checked before any work is spent."""
        found = []
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if node.domain not in STANDARD_DOMAINS and node.domain not in self.extra_domains():
                found.append(UnsupportedOp(node.op_type, node.name or "", f"custom domain '{node.domain}'"))
            elif self.supported_ops is not None and node.op_type not in self.supported_ops:
                found.append(UnsupportedOp(node.op_type, node.name or ""))
            else:
                reason = self.check_node(node)
                if reason:
                    found.append(UnsupportedOp(node.op_type, node.name or "", reason))
        return found

    def static_shapes(self, model: ir.Model, options) -> list[str]:
        """Fix the input shapes a static-shape target needs (a symbolic batch becomes 1); return notes."""
        from edgec import ir as eir

        return eir.resolve_static_shapes(model) if self.target.static_shapes else []

    def extra_domains(self) -> tuple[str, ...]:
        return ()

    def check_node(self, node: ir.Node) -> str:
        """Return why a node of a supported type still cannot be lowered, or ''."""
        return ""

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        raise NotImplementedError
