"""The notebooks in notebooks/ run top to bottom and reproduce their stored outputs (nbval, in a subprocess).

Each notebook builds its own sample data in a temporary directory and needs no
network. Cells whose output depends on paths or time are tagged
``nbval-ignore-output`` (cell magics) or start with ``# NBVAL_IGNORE_OUTPUT``.
nbval runs in its own pytest process so its collection (and the kernel it
starts) stays apart from this session; the test fails with nbval's report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
#: The Voilà app (tests/test_dashboard_browser.py opens it); it is run there, not here.
APPS = [ROOT / "notebooks" / "worker-dashboard.ipynb"]

pytestmark = pytest.mark.notebook


def test_the_notebooks_are_there_with_stored_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-views.ipynb", "03-tail-analytics.ipynb",
                                           "04-writer.ipynb", "05-upstream.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.execution_count for c in code), f"{path.name}: run it and save it with its outputs"
    for path in APPS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name}: save it without outputs"


def test_the_notebooks_run_and_reproduce_their_outputs():
    env = {k: v for k, v in os.environ.items() if k != "PARQUEDB_URL"}
    command = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "--nbval-cell-timeout=300",
               "-p", "no:cacheprovider", "-q", "--no-header", *(str(p) for p in NOTEBOOKS)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"nbval failed (rc={proc.returncode}):\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"
