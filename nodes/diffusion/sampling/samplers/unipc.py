"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"), data-prediction form, for VE samples (α = 1, λ = −log σ).

UniP-p is a multistep exponential integrator of order p built from differences of past x0 predictions;
UniC then re-solves the *same* step once the denoiser has been evaluated at its end point, raising the
order by one without an extra model call (the new evaluation is needed for the next step anyway).
``variant`` picks B(h): "bh1" B(h)=h (the paper's choice for unconditional / few steps), "bh2"
B(h)=e^h−1 (for guided sampling). Orders ramp up from 1 during warm-up and back down at the end
("lower order final"), and a step to σ = 0 is the exact first-order step x' = D.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise, call, report, sigma_list

Variant = Literal["bh1", "bh2"]


def _unipc_step(
    x: Tensor,
    history: list[tuple[float, Tensor]],
    sigma_from: float,
    sigma_to: float,
    order: int,
    variant: Variant,
    m_new: Tensor | None,
) -> Tensor:
    """One UniP step (``m_new is None``) or UniC re-solve of that step (``m_new`` = D at the end point).

    ``history`` holds (λ, D) pairs, newest last; its newest entry is the evaluation at ``sigma_from``.
    The weights ρ solve the order conditions R·ρ = b of the paper (R_{kj} = r_j^{k−1},
    b_k = k!·φ_{k+1}(h)·h/B(h) in its notation), except that UniP-2 uses ρ = ½ as in the paper.
    """
    lam_from, m0 = history[-1]
    h = -math.log(sigma_to) - lam_from
    rks: list[float] = []
    diffs: list[Tensor] = []
    for k in range(1, order):
        lam_k, m_k = history[-1 - k]
        rk = (lam_k - lam_from) / h
        rks.append(rk)
        diffs.append((m_k - m0) / rk)
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else h_phi_1
    g = h_phi_1 / hh - 1.0
    factorial = 1.0
    b = []
    for k in range(1, order + 1):
        b.append(g * factorial / b_h)
        factorial *= k + 1
        g = g / hh - 1.0 / factorial
    nodes = [*rks, 1.0]
    R = np.array([[r ** (k - 1) for r in nodes] for k in range(1, order + 1)], dtype=np.float64)
    rhs = np.array(b, dtype=np.float64)

    base = x * (sigma_to / sigma_from) - m0 * h_phi_1
    if m_new is None:
        if order == 1:
            return base
        rho = [0.5] if order == 2 else np.linalg.solve(R[:-1, :-1], rhs[:-1]).tolist()
        terms = diffs
    else:
        rho = [0.5] if order == 1 else np.linalg.solve(R, rhs).tolist()
        terms = [*diffs, m_new - m0]
    correction = terms[0] * rho[0]
    for r, t in zip(rho[1:], terms[1:], strict=True):
        correction = correction + t * r
    return base - correction * b_h


def sample_uni_pc(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    order: int = 3,
    variant: Variant = "bh1",
    lower_order_final: bool = True,
) -> Tensor:
    """UniPC multistep predictor-corrector (Zhao et al. 2023), B(h) = h ("bh1"), order 3 by default.

    ``lower_order_final`` (the reference implementation's default) lets the order fall to 1 over the last
    steps, which is more stable at very few steps but caps global accuracy at second order.
    """
    s = sigma_list(sigmas)
    n = len(s) - 1
    history: list[tuple[float, Tensor]] = []
    pending: tuple[Tensor, int] | None = None  # (sample the last predictor started from, its order)
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        if pending is not None:
            x = _unipc_step(pending[0], history, s[i - 1], s[i], pending[1], variant, denoised)
        history.append((-math.log(s[i]), denoised))
        del history[:-order]
        if s[i + 1] == 0.0:
            x_next = denoised
            pending = None
        else:
            step_order = min(order, i + 1, n - i) if lower_order_final else min(order, i + 1)
            x_next = _unipc_step(x, history, s[i], s[i + 1], step_order, variant, None)
            pending = (x, step_order)
        x = x_next
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_uni_pc_bh2(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    order: int = 3,
    lower_order_final: bool = True,
) -> Tensor:
    """UniPC (Zhao et al. 2023) with B(h) = e^h − 1 ("bh2"), the variant recommended for guided sampling."""
    return sample_uni_pc(
        denoiser,
        x,
        sigmas,
        noise=noise,
        callback=callback,
        order=order,
        variant="bh2",
        lower_order_final=lower_order_final,
    )
