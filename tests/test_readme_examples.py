"""The README's example sessions are what the CLI prints today (scripts/readme_examples.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_examples_are_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_examples.py"), "--check"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, ("README examples are out of date; run "
                                  "`python scripts/readme_examples.py`:\n" + proc.stdout + proc.stderr)
