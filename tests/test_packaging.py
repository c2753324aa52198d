"""pyproject.toml: the project installs, `reranker-console` is `python app.py`, and the ruff and
mypy configured there pass (test.sh runs them too; this keeps a failing check visible in pytest)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def test_console_command_is_app_main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["reranker-console"] == "app:cli"
    declared = set(project["dependencies"]) | {d for extra in project["optional-dependencies"].values() for d in extra}
    pinned = {line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert {d.lower() for d in declared} == {p.lower() for p in pinned}  # one set of pins, in both files


def test_wheel_builds_and_its_command_prints_the_app_help(tmp_path: Path) -> None:
    """Build the wheel (no network: --no-deps, no build isolation), install it into a throwaway
    target and run the console script's entry point: it is app.py's argument parser."""
    wheel_dir = tmp_path / "wheel"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheel_dir), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheel_dir.glob("*.whl")
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert (target / "app.py").is_file() and (target / "reranker" / "api.py").is_file()
    assert (target / "ui").is_dir()
    helped = subprocess.run([sys.executable, "-c", "import sys, app; sys.argv = ['reranker-console', '--help']; app.cli()"],
                            cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "--log-format" in helped.stdout and "--allow-media-urls" in helped.stdout


def test_ruff_passes() -> None:
    done = subprocess.run([str(VENV_BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]


def test_mypy_passes() -> None:
    done = subprocess.run([str(VENV_BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
