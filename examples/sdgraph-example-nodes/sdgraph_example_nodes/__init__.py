"""An example sdgraph node pack, declared with the same `@node` API as sdgraph's built-in nodes.

sdgraph finds it through the `sdgraph.nodes` entry point in pyproject.toml and reads `NODES`. Copying
this folder's `sdgraph_example_nodes/` into `<user data folder>/custom_nodes/` works as well.

Keep the import cheap: sdgraph imports every pack when it starts, so torch (if a node needs it) is
imported inside the node's function, as the built-in nodes do.
"""

from __future__ import annotations

from typing import Any

from graph_engine import ExecutionContext, Int, Output, Socket, String, node

# ITU-R BT.601 luma weights: what most image tools mean by "grayscale".
LUMA = (0.299, 0.587, 0.114)


@node(
    "ExampleImageGrayscale",
    display_name="Image Grayscale",
    category="example/image",
    inputs=[Socket("image", "IMAGE")],
    outputs=[Output("IMAGE")],
)
def image_grayscale(ctx: ExecutionContext, image: Any) -> tuple[Any]:
    """Each pixel's luma (BT.601) in all three channels, so every later node still gets an RGB image."""
    r, g, b = LUMA
    luma = image[..., 0:1] * r + image[..., 1:2] * g + image[..., 2:3] * b
    return (luma.expand(*image.shape[:-1], 3).contiguous(),)


@node(
    "ExampleTextRepeat",
    display_name="Text Repeat",
    category="example/text",
    inputs=[String("text", "a cat"), Int("times", 2, min=1, max=100), String("separator", ", ")],
    outputs=[Output("STRING")],
)
def text_repeat(ctx: ExecutionContext, text: str, times: int, separator: str) -> tuple[str]:
    """The text `times` times, joined by the separator: e.g. to weight a prompt by repetition."""
    return (separator.join([text] * times),)


NODES = [image_grayscale, text_repeat]
