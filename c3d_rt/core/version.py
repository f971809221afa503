"""The package version, in one place (the CLI, reports and artifacts read it)."""

__version__ = "0.1.0"
