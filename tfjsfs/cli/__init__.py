"""The ``tfjsfs`` command line: :func:`main` parses, one function per subcommand runs.

Nothing else in the package imports this layer.
"""

from .main import main

__all__ = ["main"]
