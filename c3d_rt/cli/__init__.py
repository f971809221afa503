"""The `c3d-rt` command line: thin typer commands over the library, one module per group of commands."""

from .app import app
from .main import main

__all__ = ["app", "main"]
