"""The sampler and schedule names as users see them: in the README, and in `sdgraph nodes --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS
from nodes.diffusion.sampling.samplers import GPU_ALIASES
from scripts.readme_samplers import README, marked_lists, read_lists, rewrite

ROOT = Path(__file__).resolve().parents[3]

#: ComfyUI's KSampler names (0.3.x SAMPLER_NAMES) that sdgraph does not have, each with the reason.
NOT_YET: set[str] = set()
COMFYUI_SAMPLER_NAMES = [
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
COMFYUI_SCHEDULER_NAMES = "simple sgm_uniform karras exponential ddim_uniform beta normal linear_quadratic kl_optimal"


def test_every_comfyui_name_is_registered() -> None:
    assert set(COMFYUI_SAMPLER_NAMES) - NOT_YET <= set(SAMPLERS)
    assert set(COMFYUI_SCHEDULER_NAMES.split()) <= set(SCHEDULERS)
    for alias, target in GPU_ALIASES.items():
        assert SAMPLERS[alias] is SAMPLERS[target]


def test_readme_lists_equal_the_registries() -> None:
    text = README.read_text(encoding="utf-8")
    assert read_lists(text) == marked_lists(), "README is stale: run scripts/readme_samplers.py"
    assert rewrite(text, marked_lists()) == text


def test_readme_check_catches_a_missing_name() -> None:
    """Control: the comparison above fails when the README lacks a registered name."""
    text = README.read_text(encoding="utf-8").replace("seeds_3, ", "")
    assert read_lists(text) != marked_lists()


def test_cli_nodes_json_lists_the_names(tmp_path: Path) -> None:
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("SDGRAPH_NODE_MODULES", None)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "nodes", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    specs = {s["type"]: s for s in json.loads(proc.stdout)}
    for node_type in ("KSampler", "KSamplerAdvanced", "KSamplerSelect", "BasicScheduler"):
        inputs = {i["id"]: i for i in specs[node_type]["inputs"]}
        if "sampler_name" in inputs:
            assert inputs["sampler_name"]["choices"] == list(SAMPLERS)
        if "scheduler" in inputs:
            assert sorted(inputs["scheduler"]["choices"]) == sorted(SCHEDULERS)
    assert [i["id"] for i in specs["AlignYourStepsScheduler"]["inputs"]] == ["model_type", "steps", "denoise"]
    assert [i["id"] for i in specs["GITSScheduler"]["inputs"]] == ["coeff", "steps", "denoise"]
