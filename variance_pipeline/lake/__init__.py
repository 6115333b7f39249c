"""Landing: atomic files, the data layout (raw, lake, quarantine, state), per-symbol state."""
