"""Rule checks that say why a rewrite did not fire, in the log that `--verbose` shows."""
from __future__ import annotations

import functools
import logging

logger = logging.getLogger("edgec.passes.rules")


def explained(check):
    """Log the reason of every failed MatchResult a rule check returns, with the node it looked at."""

    @functools.wraps(check)
    def wrapper(context, **values):
        result = check(context, **values)
        if not result:
            node = next((v.producer() for v in values.values() if hasattr(v, "producer") and v.producer()), None)
            where = f" at {node.op_type} '{node.name}'" if node is not None else ""
            logger.debug("rule %s not applied%s: %s", check.__name__.lstrip("_"), where, result.reason)
        return result

    return wrapper
