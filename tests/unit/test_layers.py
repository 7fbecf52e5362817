"""The house stays layered: import-linter's contracts (pyproject.toml) hold on the tree as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_layers_and_plugin_boundaries_hold_with_no_import_cycle() -> None:
    """Entrypoints > bootstrap > use cases > adapters > pure core, connectors only on the core, connector types
    independent, the core free of I/O libraries, and no cycle between sibling modules or packages."""
    lint = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout
