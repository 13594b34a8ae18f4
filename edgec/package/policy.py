"""How an artifact's outputs are judged unless something knows better: by precision.

The build writes these policies into the manifest (verification.reference and .build_host),
so the device judges with exactly what the build decided.
"""
from __future__ import annotations

from edgec.package.harness.manifest import ComparisonPolicy, Criterion, OutputPolicy

# Allowed max abs error relative to the reference output's range, per precision.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.25}
# Allowed difference between the device and the build host running the same artifact.
HOST_TOLERANCE = 1e-5


def range_policy(tolerance: float) -> ComparisonPolicy:
    """Every output within `tolerance` of the reference's range (errors under 1e-6 count as none)."""
    return ComparisonPolicy(OutputPolicy("tensor", [Criterion("rel_err", tolerance)]))


def reference_policy(precision: str) -> ComparisonPolicy:
    """Outputs against the source model's."""
    return range_policy(TOLERANCE[precision])


def host_policy() -> ComparisonPolicy:
    """A device against the build host running the same artifact."""
    return range_policy(HOST_TOLERANCE)
