"""The window's docks around the canvas: the node library, the run's images, and the log.

Panels only show things and emit requests (add this node type, select that node); the main window
turns requests into undoable commands on the document, so a panel never edits the graph itself.
"""

from ui.panels.images import ImagePanel, ImageViewer
from ui.panels.library import NODE_TYPE_MIME, NodeLibraryPanel
from ui.panels.log import LogPanel

__all__ = ["NODE_TYPE_MIME", "ImagePanel", "ImageViewer", "LogPanel", "NodeLibraryPanel"]
