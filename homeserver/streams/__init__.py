"""Low-level stream parts shared by every layer: the notifier (wakes waiters, carries no data)
and the sync and pagination tokens (positions per stream). They sit below rooms/ and sync/ so
that no import runs back up the layers."""
