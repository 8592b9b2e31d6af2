"""The layering the design promises (kb <- advisor <- tui; no torch in readers and detectors), checked
by import-linter against the contracts in pyproject.toml, plus what import-linter cannot see."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", res.stdout)
    assert kept and int(kept.group(1)) >= 4 and kept.group(2) == "0", res.stdout[-2000:]


def test_import_advisor_stays_cheap():
    """`import advisor` in a training script or a CLI start loads neither torch nor the KB."""
    code = "import sys, advisor; print(','.join(m for m in ('torch', 'kb.store', 'sentence_transformers', 'textual') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"import advisor loaded: {res.stdout.strip()}"
