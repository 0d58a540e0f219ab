"""ChargeLedger schemas."""
