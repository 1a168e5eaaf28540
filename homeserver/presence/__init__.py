"""Presence (online / unavailable / offline): heartbeats, timers and the m.presence sync stream.

`timers.py` is the pure part (the state function and the timing wheel), `service.py` the in-memory
state with its one sweep task, `store.py` the SQL.
"""
