"""Engines run work units: in this process, on a local process pool, or (later) on Ray."""
