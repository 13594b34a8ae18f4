"""Hardware-aware choice: build the candidate configurations, measure each on the device, pick.

`measure` turns a built artifact into figures (size, latency, memory, accuracy) through its own
harness; `pareto` marks the rows no other row beats; `compare` builds and measures a grid of
targets and precisions; `auto` is `--precision auto`; `tune` is an Optuna study over build flags.
"""
