"""Plugins registered by default, written like any other plugin against the public API:
the live terminal view, and the two offline recognizers whose models ship in packages."""
