"""The released models' shapes give back the released configs.

The full-size networks are built on the meta device (no memory) from the shipped public configs,
written in the original layout by the independent test writers, and read back from their shapes
alone: every architecture field must come out as published, and every tensor must convert to the
diffusers tensor of the same name and shape.
"""

from __future__ import annotations

import pytest
from accelerate import init_empty_weights

from nodes.diffusion.dit import flux, sd3, z_image
from nodes.diffusion.dit.shapes import public_config
from tests.support import tiny_flow as tf

CASES = {
    "sd3.5_medium": (sd3, tf.sd3_to_original, "SD3Transformer2DModel"),
    "sd3.5_large": (sd3, tf.sd3_to_original, "SD3Transformer2DModel"),
    "flux1_dev": (flux, tf.flux_to_original, "FluxTransformer2DModel"),
    "flux1_schnell": (flux, tf.flux_to_original, "FluxTransformer2DModel"),
    "z_image_turbo": (z_image, tf.z_image_to_original, "ZImageTransformer2DModel"),
}


@pytest.mark.parametrize("name", CASES)
def test_released_shapes_give_the_released_config(name):
    import diffusers

    module, to_original, class_name = CASES[name]
    published = public_config(name, "transformer")
    with init_empty_weights(include_buffers=True):
        model = getattr(diffusers, class_name).from_config(published)
    original = to_original(model)
    shapes = {k: tuple(v.shape) for k, v in original.items()}
    assert module.recognise(shapes)
    derived = module.config_from_shapes(shapes, source=name)
    for key, value in published.items():
        if key.startswith("_"):
            continue
        got = derived[key]
        assert (list(got) if isinstance(got, tuple | list) else got) == value, key
    # Every full-size tensor lands on a diffusers tensor of the same shape (meta tensors: no memory).
    converted = module.convert_state_dict(original, derived, source=name)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    if module is sd3:
        assert sd3.variant(shapes) == name
    if module is flux:
        assert flux.variant(shapes) == name
