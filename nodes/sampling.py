"""Sampling nodes: KSampler, KSamplerAdvanced, and the custom set where sampler, schedule, noise and
guidance are separate pieces (KSamplerSelect, BasicScheduler, KarrasScheduler, AlignYourStepsScheduler,
GITSScheduler, RandomNoise, DisableNoise, AddNoise, CFGGuider, BasicGuider, SamplerCustomAdvanced)."""

from __future__ import annotations

from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Int, Output, Socket, node

# The names ComfyUI workflows use, so they map one to one (a test checks these match the registries
# in nodes/diffusion/sampling, which are not imported here to keep torch out of the window's start-up).
SAMPLER_NAMES = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULER_NAMES = [
    "normal",
    "karras",
    "exponential",
    "sgm_uniform",
    "simple",
    "ddim_uniform",
    "beta",
    "linspace_diffusers",
    "linear_quadratic",
    "kl_optimal",
]
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def _seed(id: str) -> Any:
    return Int(id, 0, min=0, max=MAX_SEED, control_after_generate=True)


@node(
    "KSampler",
    display_name="KSampler",
    category="sampling",
    inputs=[
        Socket("model", "MODEL"),
        _seed("seed"),
        Int("steps", 20, min=1, max=10000),
        Float("cfg", 8.0, min=0.0, max=100.0, step=0.1, round=0.01),
        Combo("sampler_name", SAMPLER_NAMES),
        Combo("scheduler", SCHEDULER_NAMES),
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Socket("latent_image", "LATENT"),
        Float("denoise", 1.0, min=0.0, max=1.0, step=0.01),
    ],
    outputs=[Output("LATENT")],
)
def ksampler(
    ctx: ExecutionContext,
    model: Any,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Any,
    negative: Any,
    latent_image: Any,
    denoise: float,
) -> tuple[Any]:
    """Denoises the latent with the model, guided by the prompts; denoise < 1 keeps part of the input."""
    from nodes.diffusion.ksampler import ksampler as run

    return (run(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise),)


@node(
    "KSamplerAdvanced",
    display_name="KSampler (Advanced)",
    category="sampling",
    inputs=[
        Socket("model", "MODEL"),
        Combo("add_noise", ["enable", "disable"]),
        _seed("noise_seed"),
        Int("steps", 20, min=1, max=10000),
        Float("cfg", 8.0, min=0.0, max=100.0, step=0.1, round=0.01),
        Combo("sampler_name", SAMPLER_NAMES),
        Combo("scheduler", SCHEDULER_NAMES),
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Socket("latent_image", "LATENT"),
        Int("start_at_step", 0, min=0, max=10000),
        Int("end_at_step", 10000, min=0, max=10000),
        Combo("return_with_leftover_noise", ["disable", "enable"]),
    ],
    outputs=[Output("LATENT")],
)
def ksampler_advanced(
    ctx: ExecutionContext,
    model: Any,
    add_noise: str,
    noise_seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Any,
    negative: Any,
    latent_image: Any,
    start_at_step: int,
    end_at_step: int,
    return_with_leftover_noise: str,
) -> tuple[Any]:
    """Runs part of a schedule (start/end step), e.g. a base model's first steps then a refiner's rest."""
    from nodes.diffusion.ksampler import ksampler as run

    out = run(
        ctx,
        model,
        noise_seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive,
        negative,
        latent_image,
        1.0,
        add_noise=add_noise == "enable",
        start_step=start_at_step,
        last_step=end_at_step,
        force_full_denoise=return_with_leftover_noise == "disable",
    )
    return (out,)


@node(
    "KSamplerSelect",
    display_name="Sampler",
    category="sampling/custom_sampling/samplers",
    inputs=[Combo("sampler_name", SAMPLER_NAMES)],
    outputs=[Output("SAMPLER")],
)
def ksampler_select(ctx: ExecutionContext, sampler_name: str) -> tuple[Any]:
    """Picks a sampling algorithm."""
    from nodes.diffusion.ksampler import SamplerChoice

    return (SamplerChoice(sampler_name),)


@node(
    "BasicScheduler",
    display_name="Schedule",
    category="sampling/custom_sampling/schedulers",
    inputs=[
        Socket("model", "MODEL"),
        Combo("scheduler", SCHEDULER_NAMES),
        Int("steps", 20, min=1, max=10000),
        Float("denoise", 1.0, min=0.0, max=1.0, step=0.01),
    ],
    outputs=[Output("SIGMAS")],
)
def basic_scheduler(ctx: ExecutionContext, model: Any, scheduler: str, steps: int, denoise: float) -> tuple[Any]:
    """The noise levels to step through, from the model's own noise table."""
    from nodes.diffusion.ksampler import schedule

    return (schedule(model, scheduler, steps, denoise),)


@node(
    "KarrasScheduler",
    display_name="Karras Schedule",
    category="sampling/custom_sampling/schedulers",
    inputs=[
        Int("steps", 20, min=1, max=10000),
        Float("sigma_max", 14.614642, min=0.0, max=5000.0, step=0.01),
        Float("sigma_min", 0.0291675, min=0.0, max=5000.0, step=0.01),
        Float("rho", 7.0, min=0.0, max=100.0, step=0.01),
    ],
    outputs=[Output("SIGMAS")],
)
def karras_scheduler(ctx: ExecutionContext, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[Any]:
    """Karras et al. (2022) noise levels between sigma_max and sigma_min, denser near the end."""
    from nodes.diffusion.sampling import karras_sigmas

    if sigma_min <= 0 or sigma_max <= sigma_min:
        raise InputError("sigma_min", f"need 0 < sigma_min < sigma_max (got {sigma_min} and {sigma_max})")
    return (karras_sigmas(steps, sigma_min, sigma_max, rho),)


@node(
    "AlignYourStepsScheduler",
    display_name="Align Your Steps Schedule",
    category="sampling/custom_sampling/schedulers",
    inputs=[
        Combo("model_type", ["SD1", "SDXL", "SVD"]),
        Int("steps", 10, min=1, max=10000),
        Float("denoise", 1.0, min=0.0, max=1.0, step=0.01),
    ],
    outputs=[Output("SIGMAS")],
)
def align_your_steps_scheduler(ctx: ExecutionContext, model_type: str, steps: int, denoise: float) -> tuple[Any]:
    """NVIDIA's Align Your Steps noise levels (Sabour et al. 2024), tuned per model; log-interpolated for
    step counts other than the published 10."""
    from nodes.diffusion.sampling.tabulated import align_your_steps

    return (align_your_steps(model_type, steps, denoise),)


@node(
    "GITSScheduler",
    display_name="GITS Schedule",
    category="sampling/custom_sampling/schedulers",
    inputs=[
        Float("coeff", 1.20, min=0.80, max=1.50, step=0.05),
        Int("steps", 10, min=2, max=1000),
        Float("denoise", 1.0, min=0.0, max=1.0, step=0.01),
    ],
    outputs=[Output("SIGMAS")],
)
def gits_scheduler(ctx: ExecutionContext, coeff: float, steps: int, denoise: float) -> tuple[Any]:
    """The GITS schedules (Chen et al. 2024), searched on SD 1.5; coeff picks how the search traded steps."""
    from nodes.diffusion.sampling.tabulated import gits

    try:
        return (gits(coeff, steps, denoise),)
    except ValueError as exc:
        raise InputError("coeff", str(exc)) from None


@node(
    "RandomNoise",
    display_name="Random Noise",
    category="sampling/custom_sampling/noise",
    inputs=[_seed("noise_seed")],
    outputs=[Output("NOISE")],
)
def random_noise(ctx: ExecutionContext, noise_seed: int) -> tuple[Any]:
    """Starting noise from a seed (drawn on the CPU, so a seed gives the same image on any device)."""
    from nodes.diffusion.ksampler import Noise

    return (Noise(noise_seed),)


@node("DisableNoise", display_name="No Noise", category="sampling/custom_sampling/noise", outputs=[Output("NOISE")])
def disable_noise(ctx: ExecutionContext) -> tuple[Any]:
    """No added noise: continue from a latent that still carries its own."""
    from nodes.diffusion.ksampler import Noise

    return (Noise(None),)


@node(
    "AddNoise",
    display_name="Add Noise (custom sampling)",
    category="sampling/custom_sampling/noise",
    inputs=[
        Socket("model", "MODEL"),
        Socket("noise", "NOISE"),
        Socket("sigmas", "SIGMAS"),
        Socket("latent_image", "LATENT"),
    ],
    outputs=[Output("LATENT")],
)
def add_noise_for_sigmas(ctx: ExecutionContext, model: Any, noise: Any, sigmas: Any, latent_image: Any) -> tuple[Any]:
    """ComfyUI's custom-sampling AddNoise: puts the latent at the schedule's noise level (the first σ, or
    the span σ₀ − σ_last), so a later sampler with No Noise can continue from it; this is how
    ComfyUI workflows split noising from denoising."""
    from nodes.diffusion.ksampler import add_noise_for_sigmas as run

    return (run(model, noise, sigmas, latent_image),)


@node(
    "CFGGuider",
    display_name="CFG Guider",
    category="sampling/custom_sampling/guiders",
    inputs=[
        Socket("model", "MODEL"),
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Float("cfg", 8.0, min=0.0, max=100.0, step=0.1, round=0.01),
    ],
    outputs=[Output("GUIDER")],
)
def cfg_guider(ctx: ExecutionContext, model: Any, positive: Any, negative: Any, cfg: float) -> tuple[Any]:
    """Classifier-free guidance: ε̂ = ε̂_uncond + cfg·(ε̂_cond − ε̂_uncond); cfg 1 skips the negative."""
    from nodes.diffusion.guidance import Guider

    return (Guider(model, positive, negative, cfg),)


@node(
    "BasicGuider",
    display_name="Basic Guider",
    category="sampling/custom_sampling/guiders",
    inputs=[Socket("model", "MODEL"), Socket("conditioning", "CONDITIONING")],
    outputs=[Output("GUIDER")],
)
def basic_guider(ctx: ExecutionContext, model: Any, conditioning: Any) -> tuple[Any]:
    """The prompt alone, no negative (for guidance-distilled models)."""
    from nodes.diffusion.guidance import Guider

    return (Guider(model, conditioning, None, 1.0),)


@node(
    "SamplerCustomAdvanced",
    display_name="Custom Sampler",
    category="sampling/custom_sampling",
    inputs=[
        Socket("noise", "NOISE"),
        Socket("guider", "GUIDER"),
        Socket("sampler", "SAMPLER"),
        Socket("sigmas", "SIGMAS"),
        Socket("latent_image", "LATENT"),
    ],
    outputs=[Output("LATENT", "output"), Output("LATENT", "denoised_output")],
)
def sampler_custom_advanced(
    ctx: ExecutionContext, noise: Any, guider: Any, sampler: Any, sigmas: Any, latent_image: Any
) -> tuple[Any, Any]:
    """Samples with separately chosen noise, guidance, algorithm and schedule; also returns the last
    prediction of the clean image."""
    from nodes.diffusion.ksampler import sample

    out, denoised = sample(ctx, guider, latent_image, sigmas, sampler.name, noise)
    return out, dict(out, samples=denoised)


NODES = [
    ksampler,
    ksampler_advanced,
    ksampler_select,
    basic_scheduler,
    karras_scheduler,
    align_your_steps_scheduler,
    gits_scheduler,
    random_noise,
    disable_noise,
    add_noise_for_sigmas,
    cfg_guider,
    basic_guider,
    sampler_custom_advanced,
]
