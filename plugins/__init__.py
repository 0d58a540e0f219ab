"""The functional blocks shipped with ChargeLedger: one module per block, each a set of
pluggy hook implementations (see ``chargeledger.core.hookspec``)."""
