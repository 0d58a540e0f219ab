"""``chargeledger serve``, timing the cyclic garbage collector: what ``run.py --profile`` runs.

A sampling profiler attributes a collection to whichever Python line happened to allocate,
so the collector's share of the server's CPU is measured here instead, with ``gc.callbacks``
(about a microsecond per collection). Usage: ``serve_with_gc_stats.py OUT.json SERVE-ARGS...``;
at exit OUT.json holds collections and seconds per generation and the process's CPU seconds.
``GC_THRESHOLDS=50000,20,100`` (or ``off``) in the environment tries other collector settings
without touching the server's code, as docs/performance.md does.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
from typing import Any

from chargeledger.core.cli import main

_collections = {generation: {"collections": 0, "seconds": 0.0} for generation in (0, 1, 2)}
_started = [0.0]


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        entry = _collections[info["generation"]]
        entry["collections"] += 1
        entry["seconds"] += time.perf_counter() - _started[0]


def _write(path: str) -> None:
    cpu = time.process_time()
    gc_seconds = sum(entry["seconds"] for entry in _collections.values())
    stats = {
        "process_cpu_seconds": round(cpu, 3),
        "gc_seconds": round(gc_seconds, 3),
        "gc_percent_of_cpu": round(100 * gc_seconds / cpu, 1) if cpu else None,
        "generations": _collections,
        "thresholds": gc.get_threshold(),
    }
    with open(path, "w") as out:
        json.dump(stats, out, indent=1)


if __name__ == "__main__":
    thresholds = os.environ.get("GC_THRESHOLDS")
    if thresholds == "off":
        gc.disable()
    elif thresholds:
        gc.set_threshold(*(int(value) for value in thresholds.split(",")))
    gc.callbacks.append(_time_collection)
    atexit.register(_write, sys.argv[1])
    sys.exit(main(sys.argv[2:]))
