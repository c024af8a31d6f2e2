"""Diffusion transformers (SD3/3.5 MMDiT, FLUX.1, Z-Image) and their 16-channel autoencoders.

One module per network, each with the same four plain functions the model-family modules call:

* ``recognise(shapes)``: are these tensor names/shapes this network in a layout people download?
* ``config_from_shapes(shapes)``: the diffusers model config, every size read from the shapes and
  only what shapes cannot tell (head count without q/k norms, RoPE axes) from the shipped public
  config (``resources/dit_configs``);
* ``convert_state_dict(sd, config)``: original key names -> diffusers key names, fused projections
  split by the widths in ``config`` (never a hard-coded full-size width);
* ``build(config, state_dict, dtype)``: the diffusers model, its parameters *being* the given
  tensors (no random init, no float32 copy).

``recognise`` and ``config_from_shapes`` read names and shapes only and import neither torch nor
diffusers, so detection stays cheap; the rest import them when called.
"""
