"""The architecture as tests: the layering contract (import-linter, configured in
pyproject.toml) and a thin CLI (no model preset, layout search or breakdown under xlayer/cli)."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "xlayer"


def test_layering_contract_is_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(exe), "--config", str(PKG.parent / "pyproject.toml"), "--no-cache"],
                       capture_output=True, text=True, cwd=PKG.parent, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def _calls(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


def test_cli_is_thin():
    """CLI modules parse, call the public API and print: they build no ModelSpec preset, run no
    layout enumeration of their own and compose no breakdown."""
    forbidden = {"ModelSpec", "layout_grid", "evaluate_layouts", "evaluate_training", "op_time"}
    for path in sorted((PKG / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        bad = _calls(tree) & forbidden
        assert not bad, f"{path.name} calls {sorted(bad)}"
        assert not re.search(r"\[\"detail\"\]|\.detail\.", path.read_text()), f"{path.name} reads engine detail"


def test_no_string_keyed_engine_results():
    """No module reads an engine result by string key (IterationCost is typed)."""
    pat = re.compile(r"\[\"detail\"\]|result\[\"(iteration_time_s|memory_bytes|microbatches)\"\]")
    for path in sorted(PKG.rglob("*.py")):
        assert not pat.search(path.read_text()), path


def test_one_public_api_module_without_a_class_swap():
    """The API is xlayer/api.py; the package reaches its functions on first use. No module
    swaps a module's class, and nothing guards an import of the package's own code (or of a
    required dependency) with ``except ImportError``."""
    import types

    import xlayer
    import xlayer.api
    assert xlayer.predict is xlayer.api.predict and xlayer.validate is xlayer.api.validate
    assert xlayer.report is xlayer.api.report and type(xlayer) is types.ModuleType
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        assert "__class__ =" not in text, path
        assert not re.search(r"except \(?ImportError", text), path
