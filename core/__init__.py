"""ChargeLedger core: the gateway, the event store and the plugin host of an OCPP CSMS.

Layers, bottom up. A module imports from its own layer and the layers below it, never from
a layer above:

1. **Values**: what is said and recorded, with no I/O and no clock. ``errors`` (the one
   exception tree, drawn in its docstring), ``events`` (everything the store records),
   ``frames`` (the OCPP-J codec and payload validation), ``commands`` (what plugins return),
   ``settings`` (frozen configuration), ``times`` (the one RFC 3339 formatter), ``tariff``
   (what a tariff says, where it may be assigned, its checks).
2. **Decisions and views**: pure and synchronous, so that a recorded log can be decided and
   folded again. ``usecase_base`` (what a use case is made of: arguments, request, answer),
   ``usecases`` (version-neutral requests and answers; the table of every use case, which
   gathers the ``usecases_<block>`` modules of the functional blocks: ``usecases_display``,
   display messages; ``usecases_diagnostics``, diagnostics and log uploads, monitoring,
   customer information; ``usecases_tariffs``, the running cost told to stations;
   ``usecases_smart_charging``, charging profiles and composite schedules; ``usecases_pnc``,
   the Plug & Charge use cases, 1.6 over DataTransfer), ``plugin`` (the
   plugin contract: every name a plugin imports), ``hookspec`` (every hook
   a plugin can
   implement), ``plugin_host`` (finds the plugins, routes CALLs to them by action),
   ``decide`` (how a station CALL is answered, retransmissions included; shared with the
   what-if replay), ``security`` (station authentication: the security profiles' handshake
   decision, password hashes, the TLS context), ``tokens`` (the ID-token registry's
   registrations, checked, and the events and CSV import they make), ``usecases_firmware``
   (the firmware block's use cases), ``firmware`` (firmware campaigns as asked: selection,
   checks, the event they make; the plugins' decisions as recorded and replayed),
   ``site_decisions`` (the site limits' allocation decisions, recorded and replayed); the
   package
   ``chargeledger.projections`` (the views, folds of the events) sits here too.
3. **Storage**: blocking code that runs off the trio thread. ``store`` (the log on memory,
   SQLite or PostgreSQL, each a ``StoreBackend``), ``writer`` (the group-commit thread and
   its bridge to trio), ``allocator`` (1.6 transaction ids), ``archive`` (retention: closed
   session streams moved to archive files, and the log read back as archives plus store).
4. **Runtime**: trio tasks of a running server. ``gateway`` (accept loop, one session per
   connection), ``nodes`` (several nodes on one PostgreSQL store: which node holds each
   station, fenced sessions, heartbeats, commands routed to the holding node), ``feed``
   (the newest committed position, a wake-up for readers),
   ``dispatcher`` (what follows a commit: fold, react, execute), ``follower`` (on a
   PostgreSQL store several nodes share: every node's events folded in order, woken by
   ``LISTEN/NOTIFY``), ``cluster`` (reactions once across the nodes: who reacts to what, the
   leader lock, the timers, the reactions' position), ``worker`` (``chargeledger worker``:
   the leader that holds no station), ``ocsp`` (the OCSP checks
   a station's CALL needs, made and recorded before it is answered), ``api`` (``CentralSystem``,
   the one door towards stations), ``drain`` (a node's drain for a rolling restart: stop
   accepting, close every session, stop), ``server`` (wires it all together), ``http`` (the
   operator and billing HTTP API), ``startup`` (what ``serve`` checks before it creates
   anything, and its one-line failures).
5. **Tools**: commands built on everything below. ``cli`` (the ``chargeledger`` command),
   ``remote`` (``chargeledger command``, through a running server's API), ``station_cli``
   (``chargeledger station``: one station's views, registration, through the API), ``tokens_cli``
   (``chargeledger tokens``: the ID-token registry), ``tariffs_cli`` (``chargeledger
   tariffs`` and ``rate``: tariffs and re-rating), ``lists_cli`` (``chargeledger
   lists``: local authorization lists through the API), ``diagnostics_cli`` (``chargeledger
   logs``, ``monitors``, ``customer-information``: the diagnostics views), ``profiles_cli``
   (``chargeledger profiles``: charging profiles and composite schedules from the store),
   ``sites_cli`` (``chargeledger sites``: site limits through the API), ``firmware_cli``
   (``chargeledger firmware``: firmware updates and campaigns through the API), ``jsonlines``
   (what every ``--json`` prints), ``audit`` (audit, replay, what-if, import, verify),
   ``console`` (the operator console in the browser, served beside the API by ``serve``),
   ``simulator`` (simulated stations; it needs nothing of the core but ``jsonlines`` and
   the RFC 3339 formatter).

Public modules, for plugins, embedding programs and auditors: ``errors``, ``events``,
``frames``, ``commands``, ``settings``, ``times``, ``tariff``, ``usecase_base``, ``usecases``,
``usecases_display``, ``usecases_diagnostics``, ``usecases_tariffs``,
``usecases_smart_charging``, ``usecases_pnc``, ``usecases_firmware``, ``firmware``,
``site_decisions``, ``plugin``, ``hookspec``, ``plugin_host``, ``security``, ``tokens``,
``store``, ``api``, ``server``, ``simulator``.
Import their public names from them (this package re-exports nothing). Every other module is
internal: its names may change with any release, and code outside the core (plugins,
projections) must not import it. No module imports another's private (``_``) names.
``tests/test_exports.py`` freezes all of this.
"""
