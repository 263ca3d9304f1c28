"""The import layers in setup.cfg hold, and an import against them fails `make test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import PYTHON, REPO

#: Installed beside this interpreter (requirements/test.txt).
LINT_IMPORTS = str(Path(PYTHON).parent / "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(REPO / "setup.cfg"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_the_app_keeps_its_layers():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_model_importing_a_view_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "atlassian_oauth", tmp_path / "atlassian_oauth")
    models = tmp_path / "atlassian_oauth" / "models.py"
    models.write_text(models.read_text() + "\nfrom . import views  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "atlassian_oauth.models is not allowed to import atlassian_oauth.views" in result.stdout
