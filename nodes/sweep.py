"""XY Sweep: one sampler run per value of one or two inputs, assembled into a labelled image grid.

The classic way to *see* what a setting does: the same prompt and seed at cfg 1, 3, 5, 7.5, 9, 12,
maybe against two seeds. The node takes what a KSampler takes (model, conditioning, latent) plus the
VAE, and loops sampler + decode itself for every cell. Everything upstream runs once: the prompts are
encoded by their CLIPTextEncode nodes a single time and the conditioning is reused by every cell,
which is the point of doing the sweep inside one node rather than copying the sampler N times.

Values are typed as text: "5, 7.5, 9" for cfg, "1, 2, 3" for seed or steps, "euler, dpmpp_2m" for
sampler and scheduler names. Progress counts sampler steps over all cells, and a cancel request
stops the sweep at the next step (so also between cells).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Int, NodeOutput, Output, Socket, String, node
from nodes.sampling import MAX_SEED, SAMPLER_NAMES, SCHEDULER_NAMES

SWEEP_INPUTS = ["cfg", "seed", "steps", "sampler_name", "scheduler", "denoise"]
LABEL_NAMES = {"sampler_name": "sampler", "scheduler": "schedule"}
MAX_CELLS = 256


def parse_values(axis: str, input_name: str, text: str) -> list[Any]:
    """The typed values of one axis; errors name the axis input so the user sees where to look."""
    field = f"{axis}_values"
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise InputError(field, f"list the {input_name} values to try, separated by commas (e.g. 5, 7.5, 9)")
    values: list[Any] = []
    for p in parts:
        if input_name in ("cfg", "denoise"):
            try:
                v: Any = float(p)
            except ValueError:
                raise InputError(field, f"{p!r} is not a number") from None
            if input_name == "denoise" and not 0.0 <= v <= 1.0:
                raise InputError(field, f"denoise {p} is outside 0…1")
        elif input_name in ("seed", "steps"):
            try:
                v = int(p)
            except ValueError:
                raise InputError(field, f"{p!r} is not a whole number") from None
            if input_name == "steps" and not 1 <= v <= 10000:
                raise InputError(field, f"steps {p} is outside 1…10000")
            if input_name == "seed" and not 0 <= v <= MAX_SEED:
                raise InputError(field, f"seed {p} is outside 0…{MAX_SEED}")
        else:
            names = SAMPLER_NAMES if input_name == "sampler_name" else SCHEDULER_NAMES
            if p not in names:
                raise InputError(field, f"{p!r} is not a {LABEL_NAMES[input_name]} (choose from {', '.join(names)})")
            v = p
        values.append(v)
    return values


def label(input_name: str, value: Any) -> str:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{LABEL_NAMES.get(input_name, input_name)} {shown}"


@node(
    "XYSweep",
    display_name="XY Sweep (grid)",
    category="sampling/sweep",
    inputs=[
        Socket("model", "MODEL"),
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Socket("latent_image", "LATENT"),
        Socket("vae", "VAE"),
        Int("seed", 0, min=0, max=MAX_SEED),
        Int("steps", 20, min=1, max=10000),
        Float("cfg", 8.0, min=0.0, max=100.0, step=0.1, round=0.01),
        Combo("sampler_name", SAMPLER_NAMES),
        Combo("scheduler", SCHEDULER_NAMES),
        Float("denoise", 1.0, min=0.0, max=1.0, step=0.01),
        Combo("x_input", SWEEP_INPUTS, tooltip="the input that changes across the columns"),
        String("x_values", "1, 3, 5, 7.5, 9, 12", tooltip="comma-separated values for the columns"),
        Combo("y_input", ["none", *SWEEP_INPUTS], tooltip="the input that changes down the rows, or none"),
        String("y_values", "", tooltip="comma-separated values for the rows"),
    ],
    outputs=[Output("IMAGE")],
)
def xy_sweep(
    ctx: ExecutionContext,
    model: Any,
    positive: Any,
    negative: Any,
    latent_image: Any,
    vae: Any,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    denoise: float,
    x_input: str,
    x_values: str,
    y_input: str,
    y_values: str,
) -> NodeOutput:
    """Runs the sampler once per grid cell with one or two inputs varied; the prompts are encoded once."""
    import numpy as np
    import torch

    from nodes.diffusion.checkpoint.vae_ops import decode
    from nodes.diffusion.grid import draw_grid
    from nodes.diffusion.ksampler import ksampler

    xs = parse_values("x", x_input, x_values)
    ys: list[Any] = [None] if y_input == "none" else parse_values("y", y_input, y_values)
    if y_input == x_input:
        raise InputError("y_input", f"x and y both sweep {x_input}; pick another input for y (or none)")
    if len(xs) * len(ys) > MAX_CELLS:
        raise InputError("x_values", f"{len(xs) * len(ys)} cells is more than the {MAX_CELLS} a grid may have")
    base = {
        "seed": seed,
        "steps": steps,
        "cfg": cfg,
        "sampler_name": sampler_name,
        "scheduler": scheduler,
        "denoise": denoise,
    }
    jobs = [base | {x_input: x} | ({} if y is None else {y_input: y}) for y in ys for x in xs]
    total = sum(int(j["steps"]) for j in jobs)
    done = 0
    images: list[np.ndarray] = []
    for job in jobs:
        ctx.check_cancelled()  # between cells, even when a cell has nothing to sample

        def report(i: int, n: int, before: int = done, steps_here: int = int(job["steps"])) -> None:
            if ctx.on_progress is not None:
                ctx.on_progress(before + round(i * steps_here / max(n, 1)), total)

        # The cell's own sampler reports to the sweep's progress; no per-cell timeline is recorded.
        cell_ctx = dataclasses.replace(
            ctx, on_progress=report, records={}, settings={**ctx.settings, "record_timeline": False}
        )
        latent = ksampler(
            cell_ctx,
            model,
            int(job["seed"]),
            int(job["steps"]),
            float(job["cfg"]),
            str(job["sampler_name"]),
            str(job["scheduler"]),
            positive,
            negative,
            latent_image,
            float(job["denoise"]),
        )
        with torch.inference_mode():
            pixels = decode(vae.vae, latent["samples"][:1], scaling_factor=1.0)
        images.append((pixels[0].clamp(0, 1).numpy() * 255.0).round().astype(np.uint8))
        done += int(job["steps"])
        ctx.progress(done, total)
    x_labels = [label(x_input, x) for x in xs]
    y_labels = [] if y_input == "none" else [label(y_input, y) for y in ys]
    rows = [images[r * len(xs) : (r + 1) * len(xs)] for r in range(len(ys))]
    grid, lay = draw_grid(rows, x_labels, y_labels)
    ui = {
        "text": [f"x: {', '.join(x_labels)}"] + ([f"y: {', '.join(y_labels)}"] if y_labels else []),
        "labels": {"x_input": x_input, "x": x_labels, "y_input": y_input, "y": y_labels},
        "grid": {
            "columns": lay.columns,
            "rows": lay.rows,
            "cell": [lay.cell_w, lay.cell_h],
            "left": lay.left,
            "top": lay.top,
            "gap": lay.gap,
        },
    }
    return NodeOutput((torch.from_numpy(grid.astype(np.float32) / 255.0)[None],), ui)


NODES = [xy_sweep]
