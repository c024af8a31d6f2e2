"""Loading Stable Diffusion checkpoints (single files and diffusers folders) offline."""
