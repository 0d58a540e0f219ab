"""The operator and billing HTTP API: Litestar on Hypercorn's trio worker, in the server process.

:func:`chargeledger.core.http.server.serve_api` is what ``run_server`` starts when
``Settings.api_port`` is set; ``docs/api.md`` describes every route. This package's
``__init__`` imports nothing, so importing :mod:`chargeledger.core.http.feed` (which the
server always does) does not load the web framework.
"""
