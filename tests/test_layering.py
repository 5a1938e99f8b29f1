"""Data flows one way: clipio ← synthworld ← captioner ← t2v (read from the source, every import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clipio", "synthworld", "captioner", "t2v")
ALLOWED = {"clipio": set(), "synthworld": {"clipio"}, "captioner": {"clipio", "synthworld"},
           "t2v": {"clipio", "synthworld", "captioner"}}
# t2v drives captioning only here: the experiment (captions its clips), re-captioning prompts
# (`t2v generate --recaption`, `t2v compare --recaption`: t2v.generate.recaption_prompts) and the VLM judge
# (`t2v compare --judge`: a captioner captions the videos and checks the prompts' claims)
T2V_USES_CAPTIONER = {"t2v/experiment.py", "t2v/generate.py", "t2v/compare/judge.py"}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in ``path`` (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        found |= {n.split(".")[0] for n in names} & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package):
    bad = []
    for f in sorted((ROOT / package).rglob("*.py")):
        rel = f.relative_to(ROOT).as_posix()
        allowed = ALLOWED[package] | {package}
        if package == "t2v" and rel not in T2V_USES_CAPTIONER:
            allowed = allowed - {"captioner"}
        bad += [f"{rel} imports {p}" for p in sorted(project_imports(f) - allowed)]
    assert not bad, "imports against the flow clipio ← synthworld ← captioner ← t2v:\n" + "\n".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from t2v.train import train\n    import captioner.run as r\n")
    assert project_imports(f) == {"t2v", "captioner"}
