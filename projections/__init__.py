"""ChargeLedger projections."""
