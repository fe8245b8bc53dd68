"""The one markdown table writer of the reports (``results/**/*.md``)."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["markdown_table"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table ending with a newline; ``align`` per column: ``"l"`` (default) or
    ``"r"``. Cells are ``str()``-ed with ``|`` escaped."""
    align = list(align) if align is not None else ["l"] * len(header)
    if len(align) != len(header) or any(a not in ("l", "r") for a in align):
        raise ValueError(f"align={align!r} is not valid; expected {len(header)} of 'l' or 'r'")
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells; expected {len(header)}")
    lines = ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in [header, *rows]]
    lines.insert(1, "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    return "\n".join(lines) + "\n"
