"""The recorded denoising timeline: steps + 1 frames, previews, the final latent, VAE decode, GIF/WebP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from graph_engine import Executor
from nodes import builtin_registry
from nodes.diffusion.timeline import compose_frame, decode_frame, export_animation
from tests.nodes.lab.lab_graphs import sd_base, wire_sampler

STEPS = 4


@pytest.fixture(scope="module")
def recorded(tiny_model_root, tmp_path_factory):
    """One KSampler run with timeline recording on, plus the VAE and the decoded final image."""
    import nodes.folders

    nodes.folders.configure(extra_roots=[str(tiny_model_root)])
    try:
        b = sd_base()
        ks = b.g.add_node("KSampler", {"seed": 9, "steps": STEPS, "cfg": 7.5, "sampler_name": "euler"}).id
        wire_sampler(b, ks)
        dec = b.g.add_node("VAEDecode").id
        b.g.add_link(ks, "LATENT", dec, "samples", "LATENT")
        b.g.add_link(b.ckpt, "VAE", dec, "vae", "VAE")
        ex = Executor(builtin_registry(), output_dir=tmp_path_factory.mktemp("out"), settings={"record_timeline": True})
        result = ex.run(b.g, targets=[ks, dec, b.ckpt])
        assert result.status == "done", result.error
        vae = result.outputs[b.ckpt][2]
        return result.records[ks]["timeline"], result.outputs[ks][0], result.outputs[dec][0], vae
    finally:
        nodes.folders.configure()


def test_steps_plus_one_frames_ending_at_the_final_latent(recorded):
    timeline, latent, _, _ = recorded
    frames = timeline["frames"]
    assert len(frames) == STEPS + 1
    assert [f["step"] for f in frames] == list(range(STEPS + 1))
    assert [f["sigma"] for f in frames] == pytest.approx(timeline["sigmas"])
    assert frames[-1]["sigma"] == 0.0
    # The last frame is the sampler's output, in the model's scaled space.
    torch.testing.assert_close(frames[-1]["x"], latent["samples"][:1] * timeline["latent_scale"], rtol=1e-6, atol=1e-5)
    # Frame 0 is the seed's noise at σ_max (text-to-image starts from an empty latent).
    from nodes.diffusion.sampling import initial_noise

    start = initial_noise(9, latent["samples"].shape) * timeline["sigmas"][0]
    torch.testing.assert_close(frames[0]["x"], start[:1])


def test_frames_carry_cheap_previews_and_timesteps(recorded):
    frames = recorded[0]["frames"]
    assert frames[0]["denoised"] is None and frames[0]["preview_denoised"] is None
    for f in frames:
        assert f["preview_x"].dtype == np.uint8 and f["preview_x"].shape == (8, 8, 3)
    for f in frames[1:]:
        assert f["preview_denoised"].dtype == np.uint8 and f["preview_denoised"].shape == (8, 8, 3)
    ts = [f["t"] for f in frames]
    assert ts[0] == pytest.approx(999, abs=0.01)  # σ_max is the table's last entry
    assert ts == sorted(ts, reverse=True) and ts[-1] == 0.0


def test_decode_frame_with_the_full_vae(recorded):
    timeline, _, decoded, vae = recorded
    frames, scale = timeline["frames"], timeline["latent_scale"]
    last = decode_frame(vae, frames[-1], scale)
    assert last.dtype == np.uint8 and last.shape == (64, 64, 3)
    # Euler's last step lands exactly on its x̂₀, so decoding it is the VAE Decode node's image.
    expected = (decoded[0].numpy() * 255).round()
    assert np.abs(last.astype(np.float32) - expected).max() <= 1
    noisy = decode_frame(vae, frames[0], scale)  # frame 0 has no x̂₀ yet: its noisy x is decoded
    assert noisy.shape == (64, 64, 3) and noisy.std() > 0
    with pytest.raises(ValueError):
        decode_frame(vae, frames[1], scale, which="eps")


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_export_has_one_frame_per_timeline_frame(recorded, tmp_path, suffix):
    frames = recorded[0]["frames"]
    path = tmp_path / f"timeline{suffix}"
    assert export_animation(frames, path, scale=4) == STEPS + 1
    with Image.open(path) as img:
        assert img.n_frames == STEPS + 1  # the noise start, then one frame per step
        assert img.size == compose_frame(frames[0], STEPS, 4).size == (2 * 8 * 4 + 2, 8 * 4 + 14)


def test_export_refuses_unknown_formats_and_empty_timelines(tmp_path):
    with pytest.raises(ValueError, match="gif"):
        export_animation([{"step": 0}], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="empty"):
        export_animation([], tmp_path / "x.gif")


def test_no_recording_unless_asked(tiny_models, tmp_path):
    b = sd_base()
    ks = b.g.add_node("KSampler", {"seed": 9, "steps": 2}).id
    wire_sampler(b, ks)
    result = Executor(builtin_registry(), output_dir=tmp_path).run(b.g, targets=[ks])
    assert result.status == "done" and ks not in result.records
