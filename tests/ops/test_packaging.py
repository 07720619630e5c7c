"""The wheel installs one import package, ``leasehold``, that carries its Lua scripts and UI."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_only_the_leasehold_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = tmp_path.glob("leasehold-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"leasehold"}
    assert "leasehold/__init__.py" in names
    assert "leasehold/lua/claim.lua" in names and "leasehold/lua/lib/base.lua" in names
    assert "leasehold/api/static/index.html" in names
    assert "leasehold/api/fleet/client.py" in names
    assert not [name for name in names if "__pycache__" in name]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "leasehold = leasehold.api.cli.main:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()
