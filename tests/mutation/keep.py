"""Keep in a cosmic-ray session only the mutants a list names; delete the other work items.

    python tests/mutation/keep.py SESSION.sqlite tests/mutation/gateway-survivors.txt

The list holds one mutant a line, ``line | operator | before -> after | note`` (``#`` lines
are comments), as ``tests/mutation/*-survivors.txt``.
A work item is kept when its operator and its mutated text are those of a listed mutant;
when several are, the one nearest the listed line (the file may have moved since). Run it
between ``cosmic-ray init`` and ``cosmic-ray exec`` (``make mutation MUTATION_ONLY=...``),
from the repository's top, to re-run the known survivors of a session in minutes instead of
the whole session. Prints how many were kept and each listed mutant not found.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
import sys
from pathlib import Path

from cosmic_ray.mutating import mutate_code
from cosmic_ray.plugins import get_operator


def _words(text: str) -> str:
    return " ".join(text.split())


def _mutation(source: list[str], code: str, name: str, args: str, occurrence: int) -> tuple:
    """(first changed line, operator, "before -> after") of one work item, or ()."""
    arguments = json.loads(args)
    if isinstance(arguments, str):  # cosmic-ray stores the JSON text as a JSON string
        arguments = json.loads(arguments)
    try:
        mutated = mutate_code(code, get_operator(name)(**(arguments or {})), occurrence)
    except Exception:  # cosmic-ray cannot apply some (its "incompetent" mutants)
        return ()
    if mutated is None:
        return ()
    after_lines = mutated.splitlines()
    before, after, first = [], [], None
    matcher = difflib.SequenceMatcher(a=source, b=after_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            first = i1 + 1 if first is None else first
            before += source[i1:i2]
            after += after_lines[j1:j2]
    change = _words(" / ".join(before) + " -> " + " / ".join(after))
    return (first, name.split("/", 1)[1], change)


def main(session: str, listing: str) -> None:
    wanted = []
    for text in Path(listing).read_text().splitlines():
        if text.strip() and not text.startswith("#"):
            line, operator, rest = text.split(" | ", 2)
            change = rest.rsplit(" | ", 1)[0]  # the note
            wanted.append((int(line), operator.strip(), _words(change), text))
    db = sqlite3.connect(session)
    pending = db.execute(
        "SELECT m.job_id, m.module_path, m.operator_name, m.operator_args, m.occurrence"
        " FROM mutation_specs m LEFT JOIN work_results r ON r.job_id = m.job_id"
        " WHERE r.job_id IS NULL"
    ).fetchall()
    sources: dict[str, str] = {}
    candidates: list[tuple[int, int, str]] = []  # (distance, listed index, job)
    for job, module, name, args, occurrence in pending:
        code = sources.setdefault(module, Path(module).read_text())
        mutation = _mutation(code.splitlines(), code, name, args, occurrence)
        if not mutation:
            continue
        first, operator, change = mutation
        for index, (line, listed_operator, listed_change, _) in enumerate(wanted):
            if (operator, change) == (listed_operator, listed_change):
                candidates.append((abs(first - line), index, job))
    found: dict[int, str] = {}  # listed index -> job: the nearest, each job once
    for _, index, job in sorted(candidates):
        if index not in found and job not in found.values():
            found[index] = job
    keep = set(found.values())
    for job, *_ in pending:
        if job not in keep:
            db.execute("DELETE FROM mutation_specs WHERE job_id = ?", (job,))
            db.execute("DELETE FROM work_items WHERE job_id = ?", (job,))
    db.commit()
    print(f"kept {len(keep)} of {len(pending)} work items; {len(wanted)} listed")
    for index, (*_, text) in enumerate(wanted):
        if index not in found:
            print(f"not found: {text}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
