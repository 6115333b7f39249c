"""Candles: one home per symbol in the lake (store, bars, state), kept up to date by the refresh
(plan, requests, rescale, merge); an old data dir is migrated on first use (migrate)."""
