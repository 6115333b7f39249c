"""The package reads in stage order: the import contract in pyproject.toml holds, and the picture
in docs/architecture.md lists every module that exists (and none that does not)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "variance_pipeline"


def test_import_contract_holds() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is in the [dev] extras"
    run = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 3 kept, 0 broken" in run.stdout


def test_architecture_picture_lists_every_module() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    picture = text.split("```", 2)[1]
    listed: set[str] = set()
    folder = ""
    for line in picture.splitlines():
        entry = line.strip().split("  ")[0].strip()
        if not entry:
            continue
        indent = len(line) - len(line.lstrip())
        if entry.endswith("/"):
            folder = entry if indent <= 2 else folder
            continue
        for name in re.split(r",\s*", entry):
            if name.endswith(".py"):
                listed.add((folder if indent > 2 else "") + name)
    actual = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "simulator" not in path.parts and "__pycache__" not in path.parts
    }
    assert listed == actual, f"missing from the picture: {sorted(actual - listed)}; gone: {sorted(listed - actual)}"
