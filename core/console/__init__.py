"""The operator console: pages in the browser, served beside the HTTP API by ``chargeledger
serve`` (``/console``; ``/`` leads there), built on the API (docs/console.md).

``pages`` holds the page table (``PAGES``: one ``ConsolePage`` entry per page, added with
``register``), ``routes`` the route handlers (``ROUTES``), ``views`` what the templates show
computed (use-case forms, frame rows, the meter-value curve), ``audit`` the audit and chain
verification run for the audit page. Templates and the one script and style sheet are package
data: nothing is loaded from another host.
"""
