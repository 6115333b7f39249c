"""Pure transforms on landed data: realised volatility, option models, term-structure interpolation."""
