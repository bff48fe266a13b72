"""`python -m microverify` runs the `prove` command."""

from microverify.prover.cli import main

main()
