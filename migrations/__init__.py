"""The schema migrations as package data, so an installed wheel carries them.

The SQL files stay in the project's top-level `migrations/` folder; this file only makes that
folder an importable package that setuptools ships and `importlib.resources` can read, wherever
Parley is installed.
"""
