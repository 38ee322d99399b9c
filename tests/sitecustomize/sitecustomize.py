"""Install the loopback-only network guard in Python subprocesses of the tests.

``tests/conftest.py`` puts this directory first on ``PYTHONPATH``, so every
Python interpreter the tests start (unless run with ``-I``, ``-S`` or an
environment without that ``PYTHONPATH``) imports this module at start-up.
It registers ``tests/peers`` as the package ``peers`` (without changing
``sys.path``), so ``peers.netguard`` is one module in the subprocess too,
and installs the guard.
"""

import importlib.util
import pathlib
import sys


def _install_netguard() -> None:
    peers_dir = pathlib.Path(__file__).resolve().parent.parent / "peers"
    if "peers" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "peers",
            peers_dir / "__init__.py",
            submodule_search_locations=[str(peers_dir)],
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["peers"] = package
        spec.loader.exec_module(package)
    from peers import netguard

    netguard.install()


_install_netguard()
