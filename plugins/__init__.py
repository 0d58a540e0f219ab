"""ChargeLedger plugins."""
