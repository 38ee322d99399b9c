"""Test-suite set-up: environment for loopback-only peers, the network guard and
the peer fixtures (``tests/peers/fixtures.py``).

The environment is set first, before anything imports gcsfs or botocore.
"""

import os
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent

os.environ.update(
    {
        # gcsfs: no gRPC bucket-type probing, no GCE metadata server.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "NO_GCE_CHECK": "true",
        # botocore: dummy credentials, never ask the EC2 metadata service,
        # ignore the user's AWS files.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost,::1",
    }
)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_name, None)

if str(_TESTS) not in sys.path:  # make ``peers`` importable in any import mode
    sys.path.insert(0, str(_TESTS))

from peers import netguard  # noqa: E402

netguard.install()
# Python subprocesses started by tests install the guard via sitecustomize.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(_TESTS / "sitecustomize"), os.environ.get("PYTHONPATH")) if p
)

pytest_plugins = ["peers.fixtures"]
