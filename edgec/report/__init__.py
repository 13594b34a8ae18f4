"""Human output: rich tables (tables.py); JSON is written by the CLI directly."""
