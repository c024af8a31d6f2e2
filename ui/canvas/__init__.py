"""The node canvas: a QGraphicsView that mirrors a `graph_engine.Graph` and edits it through undo commands.

`GraphView` is the public entry point (see `ui.canvas.view`); `apply_seed_control` is the pure function
the run controller calls after each run to step seeds per the node's "control after generate" choice.

Importing this package applies `pyside_fix.make_none_immortal()`, a guard against PySide6 6.12's
"deallocating None" crash on Python 3.11 (see that module); it does nothing where the bug is absent.
"""

from ui.canvas.pyside_fix import make_none_immortal

make_none_immortal()

from ui.canvas.seed import SEED_MODES, apply_seed_control  # noqa: E402
from ui.canvas.view import GraphView  # noqa: E402

__all__ = ["SEED_MODES", "GraphView", "apply_seed_control", "make_none_immortal"]
