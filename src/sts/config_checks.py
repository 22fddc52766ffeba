"""Checks across config keys that the JSON schema cannot express.

Run when the DAG is built (``workflow/rules/common.smk``, after the schema), so a setting that
every job would trip over stops the run before the first job, with a message naming the keys.
"""

from __future__ import annotations

import math


def config_problems(config: dict) -> list[str]:
    """Every cross-field problem of a schema-valid config, one message each (empty: none)."""
    problems = []
    sweeps, scal = config["sweeps"], config["scalogram"]
    fs_hz, window_s = float(sweeps["fs_hz"]), float(sweeps["window_s"])
    fmin, fmax = float(scal["fmin_hz"]), float(scal["fmax_hz"])
    if fmin >= fmax:
        problems.append(
            f"scalogram.fmin_hz ({fmin:g}) must be below scalogram.fmax_hz ({fmax:g}): "
            "the frequency grid runs from fmin_hz up to fmax_hz"
        )
    if fmax >= fs_hz / 2:
        problems.append(
            f"scalogram.fmax_hz ({fmax:g}) must be below the Nyquist frequency of sweeps.fs_hz "
            f"({fs_hz:g} / 2 = {fs_hz / 2:g} Hz)"
        )
    samples = window_s * fs_hz
    if not math.isclose(samples, round(samples), rel_tol=0, abs_tol=1e-6):
        problems.append(
            f"sweeps.window_s x sweeps.fs_hz ({window_s:g} s x {fs_hz:g} Hz = {samples:g}) must be a "
            "whole number of samples"
        )
    return problems


def check_config(config: dict) -> None:
    """Raise ValueError listing every cross-field problem (see ``config_problems``)."""
    problems = config_problems(config)
    if problems:
        raise ValueError("config: " + "; ".join(problems))

