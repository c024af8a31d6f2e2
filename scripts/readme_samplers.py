"""Write the README's sampler and schedule lists from the registries (``SAMPLERS``, ``SCHEDULERS``).

The lists sit between ``<!-- samplers -->`` / ``<!-- schedulers -->`` markers (invisible in rendered
Markdown); ``tests/nodes/sampling/test_sampler_names.py`` fails when they differ from the registries
and names this script. Run: ``.venv/bin/python scripts/readme_samplers.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

README = ROOT / "README.md"


def marked_lists() -> dict[str, list[str]]:
    """The names the registries hold, keyed by marker name, in registry order."""
    from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS

    return {"samplers": list(SAMPLERS), "schedulers": list(SCHEDULERS)}


def read_lists(text: str) -> dict[str, list[str]]:
    """The names between each pair of markers in ``text`` (missing markers give no entry)."""
    out = {}
    for key in ("samplers", "schedulers"):
        m = re.search(rf"<!-- {key} -->(.*?)<!-- /{key} -->", text, flags=re.S)
        if m:
            out[key] = [n.strip() for n in m.group(1).replace("\n", " ").split(",") if n.strip()]
    return out


def rewrite(text: str, lists: dict[str, list[str]]) -> str:
    for key, names in lists.items():
        pattern = rf"<!-- {key} -->.*?<!-- /{key} -->"
        if not re.search(pattern, text, flags=re.S):
            raise SystemExit(f"README.md has no <!-- {key} --> … <!-- /{key} --> markers")
        text = re.sub(pattern, lambda _m, k=key, n=names: f"<!-- {k} -->{', '.join(n)}<!-- /{k} -->", text, flags=re.S)
    return text


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = rewrite(text, marked_lists())
    if new != text:
        README.write_text(new, encoding="utf-8")
        print("README.md: sampler and schedule lists updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
