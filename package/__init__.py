"""microverify: a noninterference proof checker for layered hypervisors."""

__version__ = "0.1.0"
