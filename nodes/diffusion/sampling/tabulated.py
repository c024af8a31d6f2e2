"""Published, tabulated schedules: Align Your Steps and GITS, for their own scheduler nodes.

Both were *searched* for a model rather than derived from a formula, so they ship as tables of σ:

* **Align Your Steps** (Sabour, Fidler & Kreis 2024, "Align Your Steps: Optimizing Sampling Schedules in
  Diffusion Models"): the 10-step schedules NVIDIA published for SD 1.5, SDXL and Stable Video Diffusion
  (research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html). Other step counts use the authors'
  recipe: interpolate log σ linearly over the table's position.
* **GITS** (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion Sampling"): schedules
  for 2–20 steps found on SD 1.5 for a range of the search's coefficient (0.80–1.50 in steps of 0.05), in
  ``resources/schedules/gits_sigmas.json``; longer schedules interpolate the 20-step one the same way.

As in ComfyUI's nodes, the last σ (the table's σ_min) becomes 0 so the sampler finishes on the data,
and denoise < 1 keeps the last round(steps·denoise) steps of the full schedule.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import torch
from torch import Tensor

from nodes.shipped import resource_path

AYS_MODEL_TYPES = ("SD1", "SDXL", "SVD")

#: NVIDIA's published 10-step AYS noise levels (11 sigmas, σ_max … σ_min).
AYS_NOISE_LEVELS: dict[str, list[float]] = {
    "SD1": [
        14.6146412293,
        6.4745760956,
        3.8636745985,
        2.6946151520,
        1.8841921177,
        1.3943805092,
        0.9642583904,
        0.6523686016,
        0.3977456272,
        0.1515232662,
        0.0291671582,
    ],
    "SDXL": [
        14.6146412293,
        6.3184485287,
        3.7681790315,
        2.1811480769,
        1.3405244945,
        0.8620721141,
        0.5550693289,
        0.3798540708,
        0.2332364134,
        0.1114188177,
        0.0291671582,
    ],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}

GITS_TABLE_PATH = resource_path("schedules", "gits_sigmas.json")
GITS_COEFFS = tuple(round(0.80 + 0.05 * k, 2) for k in range(15))


def loglinear_interp(sigmas: list[float], count: int) -> np.ndarray:
    """``count`` descending values whose log is linear in position between the table's log values."""
    xs = np.linspace(0.0, 1.0, len(sigmas))
    ys = np.log(np.asarray(sigmas[::-1], dtype=np.float64))
    out: np.ndarray = np.exp(np.interp(np.linspace(0.0, 1.0, count), xs, ys))[::-1].copy()
    return out


def _finish(table: np.ndarray | list[float], steps: int, denoise: float) -> Tensor:
    """Keep the last round(steps·denoise) steps, end on 0; denoise ≤ 0 gives no steps at all."""
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    total = steps if denoise >= 1.0 else max(round(steps * denoise), 1)
    sig = np.asarray(table, dtype=np.float64)[-(total + 1) :].copy()
    sig[-1] = 0.0
    return torch.from_numpy(sig).to(torch.float32)


def align_your_steps(model_type: str, steps: int, denoise: float = 1.0) -> Tensor:
    """The AYS schedule for ``model_type`` (SD1, SDXL, SVD) at ``steps`` steps."""
    try:
        levels = AYS_NOISE_LEVELS[model_type]
    except KeyError:
        raise ValueError(f"unknown AYS model type {model_type!r}; known: {', '.join(AYS_MODEL_TYPES)}") from None
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    table = levels if steps + 1 == len(levels) else loglinear_interp(levels, steps + 1)
    return _finish(table, steps, denoise)


@cache
def _gits_tables() -> dict[float, list[list[float]]]:
    data = json.loads(GITS_TABLE_PATH.read_text())
    return {round(float(k), 2): v for k, v in data["tables"].items()}


def gits(coeff: float, steps: int, denoise: float = 1.0) -> Tensor:
    """The GITS schedule for the search coefficient ``coeff`` (0.80–1.50, step 0.05) at ``steps`` ≥ 2."""
    tables = _gits_tables()
    key = round(coeff, 2)
    if key not in tables:
        raise ValueError(f"GITS has tables for coeff 0.80 to 1.50 in steps of 0.05, not {coeff}")
    if steps < 2:
        raise ValueError(f"GITS needs at least 2 steps, got {steps}")
    by_steps = tables[key]
    table = by_steps[steps - 2] if steps - 2 < len(by_steps) else loglinear_interp(by_steps[-1], steps + 1)
    return _finish(table, steps, denoise)
