"""``python -m tfjsfs``: the command line (see :mod:`tfjsfs.cli.main`)."""

from .cli.main import main

raise SystemExit(main())
