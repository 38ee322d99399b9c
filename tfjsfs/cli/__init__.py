"""The ``tfjsfs`` command line.

:mod:`.main` assembles the parser from one module per command family (each
adds its subcommands with ``add_parser``); :mod:`.arguments` and
:mod:`.output` hold what the commands share.

Nothing else in the package imports this layer.
"""

from .main import main

__all__ = ["main"]
