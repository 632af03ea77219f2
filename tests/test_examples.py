"""The examples under examples/ run as they are."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MFU" in r.stdout and "Meta-Llama-3-8B: 8.03 B parameters" in r.stdout
    html = (tmp_path / "predict.html").read_text()
    assert 'data-chart="roofline"' in html
