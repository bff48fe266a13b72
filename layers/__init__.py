"""Symbolic layers: types, expressions and operation bodies lowered to Z3 terms."""
