"""The operator and billing HTTP API: Litestar on Hypercorn's trio worker, in the server process.

:func:`chargeledger.core.http.server.serve_api` is what ``run_server`` starts when
``Settings.api_port`` is set; ``docs/api.md`` describes every route. This package's
``__init__`` imports nothing: the server imports this package only when it serves the API,
so a server without it never loads the web framework.
"""
