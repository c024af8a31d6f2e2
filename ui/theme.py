"""The canvas's theme (dark by default, or light): colours, fonts, pens and node metrics in one place.

Everything a `paint()` needs is built once here and reused, so painting a node allocates nothing big.
Fonts and pens need a running `QGuiApplication`, so they are created lazily on first use (cached) rather
than at import time; colours are plain `QColor`s and safe to build early.

Socket and wire colours come from the engine's type table (`graph_engine.types.TYPES`) so the canvas,
the properties panel and any legend agree on what a LATENT looks like.
"""

from __future__ import annotations

import zlib
from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPalette, QPen

from graph_engine.types import TYPES

# ---- palette ------------------------------------------------------------------------------------

BACKGROUND = QColor("#1e1f22")
GRID_MINOR = QColor("#26282c")
GRID_MAJOR = QColor("#2f3237")

NODE_BODY = QColor("#2b2d31")
NODE_BORDER = QColor("#111214")
NODE_SELECTED = QColor("#f0f0f0")
TITLE_TEXT = QColor("#e8e8e8")
LABEL_TEXT = QColor("#b8bcc4")
VALUE_TEXT = QColor("#e6e6e6")
DIM_TEXT = QColor("#8a8f98")
WIDGET_BG = QColor("#1f2023")
WIDGET_BORDER = QColor("#3a3d43")
WIDGET_ARROW = QColor("#8a8f98")
TOGGLE_ON = QColor("#5c9ded")
TOGGLE_OFF = QColor("#44474d")

# Bypassed nodes are tinted purple, muted ones are drawn faded (the ComfyUI convention users know).
BYPASS_TINT = QColor(150, 70, 200, 90)
BYPASS_BORDER = QColor("#9b5de5")
MUTE_OPACITY = 0.35

NOTE_BODY = QColor("#4a4326")
NOTE_HEADER = QColor("#6b5f2a")
NOTE_TEXT = QColor("#f1e7b5")

GROUP_FILL = QColor(90, 110, 140, 45)
GROUP_BORDER = QColor(120, 140, 170, 140)
GROUP_TITLE = QColor("#cfd6e0")

MISSING_TYPE_HEADER = QColor("#7a2e2e")

PROBLEM = QColor("#ff5252")
ERROR_TEXT_BG = QColor("#3b1f1f")
ERROR_TEXT = QColor("#ffb4b4")

# Run states drawn as a border and a small badge.
STATE_COLORS: dict[str, QColor] = {
    "queued": QColor("#8d99ae"),
    "running": QColor("#4caf50"),
    "cached": QColor("#4fc3f7"),
    "done": QColor("#7cb342"),
    "error": QColor("#ff5252"),
}
PROGRESS_BG = QColor("#1a1b1e")
PROGRESS_FG = QColor("#4caf50")

REFUSAL_BG = QColor(60, 20, 20, 230)
REFUSAL_TEXT = QColor("#ffd0d0")

SEARCH_STYLE = """
QFrame#nodeSearch { background: #26282c; border: 1px solid #4a4d55; border-radius: 6px; }
QLineEdit { background: #1b1c1f; color: #e8e8e8; border: 1px solid #3a3d43; padding: 4px; }
QListWidget { background: #26282c; color: #d8d8d8; border: none; }
QListWidget::item:selected { background: #3d5a80; color: white; }
"""

EDITOR_STYLE = "background: #1b1c1f; color: #e8e8e8; border: 1px solid #5c9ded;"

# ---- themes -------------------------------------------------------------------------------------
# The palette above is the dark theme. A theme is applied by changing those QColor objects in place
# (painters read `theme.X` when they paint), before or after windows exist; a repaint shows it.

THEMES = ("dark", "light")
_LIGHT = {
    "BACKGROUND": "#f3f4f6", "GRID_MINOR": "#e7e9ed", "GRID_MAJOR": "#d6d9df",
    "NODE_BODY": "#ffffff", "NODE_BORDER": "#9aa0a8", "NODE_SELECTED": "#1e6fd9",
    "LABEL_TEXT": "#4a4f57", "VALUE_TEXT": "#1d1f23", "DIM_TEXT": "#767c86",
    "WIDGET_BG": "#eef0f3", "WIDGET_BORDER": "#c3c7ce", "WIDGET_ARROW": "#6b717b", "TOGGLE_OFF": "#c9ccd2",
    "NOTE_BODY": "#fbf3cf", "NOTE_HEADER": "#e2cf7a", "NOTE_TEXT": "#3b3315",
    "GROUP_TITLE": "#2b3340", "ERROR_TEXT_BG": "#fde2e2", "ERROR_TEXT": "#8a1c1c", "PROGRESS_BG": "#e3e5e9",
}  # fmt: skip
_LIGHT_STYLES = {
    "SEARCH_STYLE": """
QFrame#nodeSearch { background: #ffffff; border: 1px solid #b9bec6; border-radius: 6px; }
QLineEdit { background: #f6f7f9; color: #1d1f23; border: 1px solid #c3c7ce; padding: 4px; }
QListWidget { background: #ffffff; color: #1d1f23; border: none; }
QListWidget::item:selected { background: #cfe0fb; color: #0b1f3a; }
""",
    "EDITOR_STYLE": "background: #ffffff; color: #1d1f23; border: 1px solid #1e6fd9;",
}
_DARK = {name: QColor(globals()[name]) for name in _LIGHT}
_DARK_STYLES = {name: globals()[name] for name in _LIGHT_STYLES}
current = "dark"


def apply(name: str) -> str:
    """Switch the canvas palette to theme `name` ("dark" or "light"; anything else is dark); returns it."""
    global current
    name = name if name in THEMES else "dark"
    for key, dark in _DARK.items():
        globals()[key].setRgba((QColor(_LIGHT[key]) if name == "light" else dark).rgba())
    globals().update(_LIGHT_STYLES if name == "light" else _DARK_STYLES)
    current = name
    return name


# Title-bar colours by node category; unknown categories get a stable colour from a hash.
CATEGORY_COLORS: dict[str, QColor] = {
    "loaders": QColor("#3d5a80"),
    "conditioning": QColor("#7a5230"),
    "latent": QColor("#7a3b5e"),
    "sampling": QColor("#2f6b4f"),
    "image": QColor("#35607a"),
    "utils": QColor("#5a5a5a"),
}
_HASHED = [QColor(c) for c in ("#4a5d7a", "#6a4a7a", "#4a7a6a", "#7a6a4a", "#5a7a4a", "#7a4a55")]

# ---- metrics (scene units) ----------------------------------------------------------------------

NODE_MIN_WIDTH = 200.0
FILE_NODE_MIN_WIDTH = 280.0  # nodes that pick a file from disk (loaders): names run long
TITLE_HEIGHT = 26.0
ROW_HEIGHT = 22.0
MULTILINE_ROWS = 4
CORNER = 6.0
SOCKET_RADIUS = 5.0
# How far from a socket's centre a press or a drop still counts as hitting it.
SOCKET_HIT = 10.0
PADDING = 8.0
WIDGET_HEIGHT = 18.0
IMAGE_MAX_HEIGHT = 320.0
NOTE_SIZE = (260.0, 160.0)
GROUP_TITLE_HEIGHT = 28.0
PROBLEM_PEN_WIDTH = 3.0  # device pixels: a cosmetic pen, so it stays visible when zoomed out
# Below this zoom, text and widgets are not drawn (node geometry is unchanged).
LOD_THRESHOLD = 0.45
# Below the threshold a node shows only its title (and error), this many pixels tall on screen.
FAR_TEXT_PX = 11.0
FAR_TEXT_MIN_PX = 8.0  # a failed node's title and error share a small node at no less than this
FAR_TEXT_BG = QColor(0, 0, 0, 150)
GRID_STEP = 20.0
GRID_MAJOR_EVERY = 5


def type_color(type_name: str) -> QColor:
    """The colour of a socket/wire type, from the engine's table (grey for unknown types)."""
    return _type_color(type_name)


@cache
def _type_color(type_name: str) -> QColor:
    info = TYPES.get(type_name)
    return QColor(info.color if info else "#9e9e9e")


@cache
def category_color(category: str) -> QColor:
    """Title-bar colour for a category; stable across runs so a user learns it."""
    top = category.split("/", 1)[0]
    if top in CATEGORY_COLORS:
        return CATEGORY_COLORS[top]
    return _HASHED[zlib.crc32(top.encode()) % len(_HASHED)]


# ---- fonts and pens (lazy: they need a QGuiApplication) -----------------------------------------


@cache
def title_font() -> QFont:
    f = QFont()
    f.setPointSizeF(9.5)
    f.setBold(True)
    return f


@cache
def label_font() -> QFont:
    f = QFont()
    f.setPointSizeF(8.5)
    return f


@cache
def group_font() -> QFont:
    f = QFont()
    f.setPointSizeF(12.0)
    f.setBold(True)
    return f


@cache
def title_metrics() -> QFontMetricsF:
    return QFontMetricsF(title_font())


@cache
def label_metrics() -> QFontMetricsF:
    return QFontMetricsF(label_font())


@cache
def pen(color: str, width: float = 1.0, cosmetic: bool = False) -> QPen:
    """A shared pen. Keyed by the colour's name so callers pass `QColor.name(HexArgb)` or a literal."""
    p = QPen(QColor(color), width)
    p.setCosmetic(cosmetic)
    p.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return p


def problem_pen() -> QPen:
    """The outline for nodes with problems: width in device pixels, so zooming out never hides it."""
    return pen(PROBLEM.name(), PROBLEM_PEN_WIDTH, True)


def window_palette(name: str) -> QPalette:
    """The window's (Fusion) palette for a theme: docks, menus and dialogs matching the canvas."""
    roles = QPalette.ColorRole
    if name == "light":
        colors = {
            roles.Window: "#eceef1", roles.WindowText: "#1d1f23", roles.Base: "#ffffff",
            roles.AlternateBase: "#f3f4f6", roles.ToolTipBase: "#ffffff", roles.ToolTipText: "#1d1f23",
            roles.Text: "#1d1f23", roles.Button: "#e3e6ea", roles.ButtonText: "#1d1f23",
            roles.BrightText: "#c62828", roles.Link: "#1e6fd9", roles.Highlight: "#1e6fd9",
            roles.HighlightedText: "#ffffff", roles.PlaceholderText: "#8a9099",
        }  # fmt: skip
        disabled_text = "#a0a5ad"
    else:
        colors = {
            roles.Window: "#25262a", roles.WindowText: "#dcdfe4", roles.Base: "#1c1d20",
            roles.AlternateBase: "#2a2c30", roles.ToolTipBase: "#2f3136", roles.ToolTipText: "#e8e8e8",
            roles.Text: "#dcdfe4", roles.Button: "#2e3035", roles.ButtonText: "#dcdfe4",
            roles.BrightText: "#ff6b6b", roles.Link: "#5c9ded", roles.Highlight: "#3d6fb6",
            roles.HighlightedText: "#ffffff", roles.PlaceholderText: "#7d828b",
        }  # fmt: skip
        disabled_text = "#6b6f76"
    palette = QPalette()
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    for role in (roles.Text, roles.ButtonText, roles.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled_text))
    return palette
