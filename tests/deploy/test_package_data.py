"""A non-editable install (what the Dockerfile's ``scripts/install.sh /opt/venv`` does) ships the data files
the code reads: the trade-off page's HTML, CSS and JavaScript, and the built-in family specs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.deploy.conftest import ROOT

PACKAGES = ("contract", "service", "models", "loadtests")


def test_the_wheel_carries_the_pages_files_and_the_family_specs(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ and egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
               "--wheel-dir", str(tmp_path / "dist"), str(source)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("slimserve-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    page_files = {
        path.relative_to(ROOT).as_posix()
        for folder in ("static", "templates")
        for path in (ROOT / "service" / "ui" / folder).iterdir()
    }
    assert page_files and page_files <= shipped, sorted(page_files - shipped)
    specs = {path.relative_to(ROOT).as_posix() for path in (ROOT / "models" / "families").glob("*.yaml")}
    assert {"models/families/mnist.yaml", "models/families/wdbc.yaml"} <= specs <= shipped
