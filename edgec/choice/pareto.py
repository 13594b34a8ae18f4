"""Pareto marking: a row is optimal when no other row is at least as good on every objective and
better on one. Pure, so it is tested on hand-made tables."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Objective:
    name: str
    value: Callable  # row -> float (None: the row has no figure and takes no part)
    maximize: bool = False

    def key(self, row) -> float:
        """The value to minimize."""
        value = self.value(row)
        return -value if self.maximize else value


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front(rows: Sequence, objectives: Sequence[Objective]) -> list[bool]:
    """For each row, whether it is Pareto-optimal among the rows that have every objective's figure."""
    keys = [None if any(o.value(r) is None for o in objectives) else [o.key(r) for o in objectives] for r in rows]
    return [k is not None and not any(other is not None and dominates(other, k) for other in keys) for k in keys]
