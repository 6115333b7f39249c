"""The per-symbol candle cache: store (files), refresh (fetch only what is missing), rebase (lake after a split), sync (cache -> lake)."""
