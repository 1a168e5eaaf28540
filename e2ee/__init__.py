"""End-to-end encryption support: to-device messages (and later device keys, one-time keys,
cross-signing, key backup)."""
