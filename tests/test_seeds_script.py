"""``benchmarks/seeds.py`` reports a user mistake as ``synthlearn run`` does: one line per
problem, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seeds.py"


def test_a_bad_recipe_is_one_line_per_problem(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\nseed: 0\ndata: {use: phantomm}\n")
    result = subprocess.run([sys.executable, str(SCRIPT), str(recipe), "--seeds", "0",
                             "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: $.arms: required, missing",
        "error: $.data.use: unknown dataset 'phantomm'; did you mean 'phantom'? installed: "
        + result.stderr.split("installed: ", 1)[1].strip()]
    assert not list(tmp_path.glob("runs*"))
