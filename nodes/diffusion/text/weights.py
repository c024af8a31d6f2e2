"""Prompt emphasis syntax: turn ``"a (red:1.3) [dull] ((cat))"`` into ``(text, weight)`` segments.

The syntax is the one Stable Diffusion users know from A1111 and ComfyUI:

=====================  =========================================================
``(text)``             weight × 1.1
``((text))``           × 1.1 per pair (≈ 1.21); any nesting depth
``(text:1.5)``         weight × 1.5 (replaces the ×1.1 of that pair); spaces are
                       allowed around the number: ``(text : 1.5 )``
``[text]``             weight ÷ 1.1
``\\(`` ``\\)`` ``\\[`` ``\\]``  a literal bracket
``\\:`` ``\\\\``           a literal colon / backslash
=====================  =========================================================

Weights multiply through nesting: ``((a:2) b)`` gives ``a`` 2 × 1.1 and ``b`` 1.1.

The parser never raises on user text, because a prompt is typed live in a text box and every
intermediate state must still produce an image:

* a bracket without a partner (``"(unclosed"``, ``"oops)"``) is kept as a literal character;
* ``(`` and ``[`` pair independently (two stacks), so crossed brackets such as ``"(a [b) c]"`` still
  pair up: ``a`` × 1.1, ``b`` × 1.1 ÷ 1.1, ``c`` ÷ 1.1;
* a ``:`` that is not followed by a number and ``)`` closing a ``(`` group is literal text
  (``"(time: noon)"`` is an ordinary ×1.1 group containing a colon);
* only unsigned decimal numbers are weights (``1``, ``1.25``, ``.5``), so no ``inf``/``nan`` can come from
  the text; ``(x:0)`` is a valid weight 0 (the token then equals the empty prompt's embedding);
* every weight is capped at :data:`MAX_WEIGHT` so absurd nesting cannot overflow to infinity.

A backslash before any other character is an ordinary backslash. Textual-inversion references
(``embedding:name``) are not interpreted here.

The result is a list of non-empty segments with adjacent equal weights merged; an empty or all-syntax
prompt gives ``[]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMPHASIS = 1.1
"""Multiplier of one ``( )`` pair; ``[ ]`` divides by it."""
MAX_WEIGHT = 1000.0
"""Upper bound on any weight; far beyond anything useful, it only keeps arithmetic finite."""

ESCAPABLE = "()[]:\\"
"""Characters that a backslash turns into literal text."""

# ":" + optional spaces + unsigned decimal + optional spaces + ")" — the explicit-weight closer.
_WEIGHT_CLOSE = re.compile(r":[ \t\r\n]*(\d+(?:\.\d*)?|\.\d+)[ \t\r\n]*\)")


@dataclass(frozen=True)
class _Open:
    kind: str  # "(" or "["


@dataclass(frozen=True)
class _Close:
    kind: str  # ")" or "]"
    raw: str  # the characters consumed, kept in case the close turns out to be unmatched
    weight: float | None  # explicit "(x:w)" weight, else None


_Item = str | _Open | _Close


def _lex(prompt: str) -> list[_Item]:
    """Split the prompt into literal text, open brackets and close brackets (escapes resolved)."""
    items: list[_Item] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            items.append("".join(text))
            text.clear()

    i, n = 0, len(prompt)
    while i < n:
        c = prompt[i]
        if c == "\\" and i + 1 < n and prompt[i + 1] in ESCAPABLE:
            text.append(prompt[i + 1])
            i += 2
        elif c in "([":
            flush()
            items.append(_Open(c))
            i += 1
        elif c in ")]":
            flush()
            items.append(_Close(c, c, None))
            i += 1
        elif c == ":" and (m := _WEIGHT_CLOSE.match(prompt, i)):
            flush()
            items.append(_Close(")", m.group(0), min(float(m.group(1)), MAX_WEIGHT)))
            i = m.end()
        else:
            text.append(c)
            i += 1
    flush()
    return items


def _pair(items: list[_Item]) -> tuple[dict[int, float], dict[int, int]]:
    """Match brackets: return ``({open index: multiplier}, {close index: open index})``.

    Only matched brackets appear. Round and square brackets use separate stacks so that one stray
    bracket of one kind cannot unbalance the other kind. A weight-closer that finds no ``(`` is
    unmatched like any other close.
    """
    stacks: dict[str, list[int]] = {"(": [], "[": []}
    multipliers: dict[int, float] = {}
    partner: dict[int, int] = {}
    for idx, item in enumerate(items):
        if isinstance(item, _Open):
            stacks[item.kind].append(idx)
        elif isinstance(item, _Close):
            stack = stacks["(" if item.kind == ")" else "["]
            if stack:
                opened = stack.pop()
                if item.kind == "]":
                    multipliers[opened] = 1.0 / EMPHASIS
                else:
                    multipliers[opened] = EMPHASIS if item.weight is None else item.weight
                partner[idx] = opened
    return multipliers, partner


def parse_prompt(prompt: str) -> list[tuple[str, float]]:
    """Parse emphasis syntax into ``[(text, weight), ...]``; never raises for any string.

    The weight of a piece of text is the product, in opening order, of the multipliers of all matched
    bracket pairs around it, so equal nestings always give bit-identical weights.
    """
    items = _lex(prompt)
    multipliers, partner = _pair(items)
    active: list[int] = []  # matched opens enclosing the cursor, in opening order
    segments: list[tuple[str, float]] = []

    def emit(text: str) -> None:
        weight = 1.0
        for idx in active:
            weight = min(weight * multipliers[idx], MAX_WEIGHT)
        if segments and segments[-1][1] == weight:
            segments[-1] = (segments[-1][0] + text, weight)
        else:
            segments.append((text, weight))

    for idx, item in enumerate(items):
        if isinstance(item, str):
            emit(item)
        elif isinstance(item, _Open):
            if idx in multipliers:
                active.append(idx)
            else:  # unmatched: literal text
                emit(item.kind)
        elif idx in partner:
            active.remove(partner[idx])
        else:
            emit(item.raw)
    return segments


def escape_prompt(text: str) -> str:
    """Escape ``text`` so that :func:`parse_prompt` returns it verbatim with weight 1.0.

    Useful when a node inserts user-supplied words (file names, wildcard values) into a prompt.
    """
    return "".join("\\" + c if c in ESCAPABLE else c for c in text)
