"""Obligations, solving, counterexamples, reports and the `prove` command."""
