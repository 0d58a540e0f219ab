"""CPU time of the commit path's in-process work: folding committed events and reacting to them.

    python benchmarks/fold_react.py                        # 200,000 frames of generated traffic
    python benchmarks/fold_react.py --store sqlite:///x.db # the events of a recorded log
    python benchmarks/fold_react.py --callgrind --repeat 2 # untimed, under valgrind

What ``CommitDispatcher.on_commit`` does per event (``Views.apply``, then ``PluginHost.react``
with the default plugins and settings), in this process, over an in-memory log: the traffic
of ``benchmarks/audit_replay.py`` (boot, status, a transaction with 40 meter values,
heartbeats, stop; 2,000 stations), or the events of a store a benchmark run left. Each
repetition folds the whole log into fresh views; the figure is the median CPU time
(``time.process_time``, this process only) per event, so it does not depend on what else the
machine runs as much as wall-clock figures do. The script uses only what every version of
ChargeLedger has (``Views``, ``PluginHost.react``), so it runs against an older tree's
install too: compare two trees by running it with each tree's Python.

``--callgrind`` runs ``--repeat`` repetitions untimed (fold and react), for instruction
counts that other processes do not disturb: run it under valgrind with ``--repeat 0`` and
with ``--repeat 2``, and divide the difference of the two totals by twice the events::

    valgrind --tool=callgrind --callgrind-out-file=cg.%p python benchmarks/fold_react.py \
        --store sqlite:///x.db --callgrind --repeat 2
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

from chargeledger.core.events import Recorded
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from chargeledger.projections import Views

sys.path.insert(0, str(Path(__file__).parent))
from audit_replay import traffic  # the benchmark beside this one


def generated(frames: int) -> list[Recorded]:
    """The audit benchmark's traffic as committed events, positions from 1."""
    return [
        Recorded(position, stream, version, event)
        for position, (stream, version, event) in enumerate(traffic(frames), start=1)
    ]


def stored(url: str) -> list[Recorded]:
    """Every event of the store at ``url``."""
    store = open_store(url)
    try:
        records: list[Recorded] = []
        while batch := store.read(records[-1].position if records else 0, 10_000):
            records += batch
        return records
    finally:
        store.close()


def fold_all(records: list[Recorded], host: PluginHost, react: bool) -> None:
    """What the dispatcher does for each committed event, on fresh views."""
    views = Views()
    for recorded in records:
        views.apply(recorded)
        if react:
            host.react(recorded, views)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--store", help="fold this store's events instead of generated ones")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true", help="untimed repetitions only")
    args = parser.parse_args()
    records = stored(args.store) if args.store else generated(args.frames)
    host = PluginHost(Settings())
    gc.freeze()  # the log is long-lived, as the server's committed state is
    if args.callgrind:
        for _ in range(args.repeat):
            fold_all(records, host, react=True)
        print(f"{len(records):,} events, {args.repeat} repetitions")
        return 0
    results: dict[str, list[float]] = {"fold": [], "fold + react": []}
    for _ in range(args.repeat):
        for name, react in (("fold", False), ("fold + react", True)):
            started = time.process_time()
            fold_all(records, host, react)
            results[name].append(time.process_time() - started)
    print(f"{len(records):,} events, {args.repeat} repetitions, median CPU time per event:")
    for name, times in results.items():
        per_event = statistics.median(times) / len(records) * 1e6
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"  {name:13} {per_event:6.2f} us  (runs, s: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
