"""The auditor's toolkit: findings with evidence, log import, replay and what-if, hash chains.

The commands are ``chargeledger audit``, ``replay`` (``--what-if``), ``import`` and ``verify``
(:mod:`chargeledger.core.audit.cli`); ``docs/audit.md`` walks through them.
"""
