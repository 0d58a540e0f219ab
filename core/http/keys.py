"""API keys: making a new one and the hash the settings keep instead of it."""

from __future__ import annotations

import hashlib
import json
import secrets

from chargeledger.core.settings import ApiRole

__all__ = ["hash_key", "new_key", "settings_toml"]


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return "clk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest kept in the settings instead of ``key``.

    A plain hash suffices (no salt, no slow KDF): keys are 256 random bits, not passwords,
    so there is nothing to guess from a leaked digest."""
    return hashlib.sha256(key.encode()).hexdigest()


def settings_toml(name: str, role: ApiRole, key: str) -> str:
    """The TOML that configures ``key`` (one ``[[api_keys]]`` entry; append it to the file)."""
    # A JSON string is a valid TOML basic string (same escapes), whatever the name holds.
    return (
        f"[[api_keys]]\nname = {json.dumps(name)}\nrole = {json.dumps(role)}\n"
        f"sha256 = {json.dumps(hash_key(key))}\n"
    )
