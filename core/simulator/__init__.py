"""A charging-station simulator: N OCPP 1.6J / 2.0.1 stations against any CSMS, as
``chargeledger simulate`` and as the load generator of ``benchmarks/``.

Layers, bottom up: :mod:`.websocket` (a lean RFC 6455 client, plain or TLS),
:mod:`.credentials` (passwords, CA and client certificates per station), :mod:`.frames`
(pre-encoded CALLs), :mod:`.station` (one station, its CALLs and their tally),
:mod:`.scenarios` (load shapes and the per-process worker), :mod:`.runner` (options, safety
caps, processes, readings, the report), :mod:`.command` (the CLI). See docs/simulator.md.
"""

from chargeledger.core.simulator.command import format_report, register
from chargeledger.core.simulator.runner import (
    OptionError,
    Options,
    Report,
    ServerProbe,
    machine_busy_seconds,
    raise_fd_limit,
    simulate,
)
from chargeledger.core.simulator.scenarios import SCENARIOS

__all__ = [
    "SCENARIOS",
    "OptionError",
    "Options",
    "Report",
    "ServerProbe",
    "format_report",
    "machine_busy_seconds",
    "raise_fd_limit",
    "register",
    "simulate",
]
