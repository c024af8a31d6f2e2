"""Where sdgraph's shipped data lives: the model configs, vocabularies and schedules (``resources/``) and the
workflow templates (``workflows/``).

Every path into those folders is built here, so an installed sdgraph and a source checkout find them the
same way. In a checkout they sit at the top of the repository, beside the packages. A wheel cannot put
top-level folders anywhere importable, so ``setup.py`` ships them as package data under
``nodes/_data/`` and they are found through ``importlib.resources``; that copy wins when it exists, so an
installed sdgraph never reads a stray ``resources/`` folder that happens to sit beside site-packages.
Nothing here imports torch or Qt: the window and the CLI ask for templates before any model work.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

# Where setup.py puts the two folders inside the installed `nodes` package.
INSTALLED_DATA = "_data"
# The repository root of a source checkout (or an editable install, which imports from it).
CHECKOUT_ROOT = Path(__file__).resolve().parents[1]


@cache
def _root(name: str) -> Path:
    """The folder `name` as installed package data, else in the checkout.

    The checkout path is returned even when it is missing, so a broken install fails where a file is
    read, naming the full path it looked for, rather than on import.
    """
    installed = files("nodes").joinpath(INSTALLED_DATA, name)
    if installed.is_dir():
        # A wheel installed by pip is unpacked, so this is a real folder that torch, transformers and
        # gzip can open by path; a zipped install would need extracting first, which nobody does here.
        if not isinstance(installed, Path):
            raise RuntimeError(f"sdgraph's {name} data is inside an archive ({installed}); install it unzipped")
        return installed
    return CHECKOUT_ROOT / name


def resources_dir() -> Path:
    """The shipped ``resources/`` folder: public model configs, tokenizer vocabularies, sigma tables."""
    return _root("resources")


def resource_path(*parts: str) -> Path:
    """A file or folder inside ``resources/``, e.g. ``resource_path("sd_configs", "sd1")``."""
    return resources_dir().joinpath(*parts)


def workflows_dir() -> Path:
    """The shipped workflow templates (``workflows/*.json``), the editor's New from template menu."""
    return _root("workflows")
