"""microverify: a noninterference proof checker for layered hypervisors."""

__version__ = "0.1.0"
REPORT_URL = "the microverify issue tracker"  # where internal errors are to be reported
