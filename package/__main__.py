"""`python -m microverify` runs the `prove` command."""

from microverify.entry import prove

if __name__ == "__main__":  # worker processes import this module too; they must not run main
    prove()
