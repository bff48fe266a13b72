"""Data oracles: declarations, per-principal counters, and the shared uninterpreted functions."""
