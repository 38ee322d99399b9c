"""``python -m tfjsfs``: the command line (see :mod:`tfjsfs.cli`)."""

from .cli import main

raise SystemExit(main())
