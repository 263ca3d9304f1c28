"""The worker setup docs/celery.md recommends, as the page has it (its Python block)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "celery.md"


def documented_block() -> str:
    """The Python block under "The recommended setup" in docs/celery.md."""
    text = DOC.read_text()
    match = re.search(r"## The recommended setup\n.*?```python\n(.*?)```", text, re.DOTALL)
    if match is None:
        raise RuntimeError(f"{DOC} has no python block under 'The recommended setup'")
    return match.group(1)
