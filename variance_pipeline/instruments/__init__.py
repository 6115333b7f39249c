"""Instrument symbology: Tastytrade, OCC and futures symbols parsed in one place (no I/O of its own)."""
