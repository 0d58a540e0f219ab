"""ChargeLedger core."""
