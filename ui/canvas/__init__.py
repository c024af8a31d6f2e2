"""The node canvas: a QGraphicsView that mirrors a `graph_engine.Graph` and edits it through undo commands.

`GraphView` is the public entry point (see `ui.canvas.view`); `apply_seed_control` is the pure function
the run controller calls after each run to step seeds per the node's "control after generate" choice.
"""

from ui.canvas.seed import SEED_MODES, apply_seed_control
from ui.canvas.view import GraphView

__all__ = ["SEED_MODES", "GraphView", "apply_seed_control"]
