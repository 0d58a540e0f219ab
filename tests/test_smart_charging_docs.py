"""The worked examples of docs/smart-charging.md are tests: every ``python`` block runs, in
order, in one namespace, and what the first prints is the ``text`` block after it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "smart-charging.md"


def test_the_examples_run_and_print_what_the_page_shows() -> None:
    text = PAGE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 4
    namespace: dict[str, object] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], str(PAGE), "exec"), namespace)
    shown = re.search(r"```python\n.*?```\n\nprints\n\n```text\n(.*?)```", text, re.S)
    assert shown is not None
    assert printed.getvalue() == shown.group(1)
    for block in blocks[1:]:
        exec(compile(block, str(PAGE), "exec"), namespace)
