"""ChargeLedger tests."""
