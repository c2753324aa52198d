"""The engine port: flags that pick the engine, and Ray never imported by the embedded mode."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from reranker.errors import InputError
from reranker.settings import settings_from

NO_RAY = """
import sys
import app
from reranker.settings import settings_from
settings = settings_from(["--data-dir", sys.argv[1]], {})
app.quiet_offline_environment(settings)
built, service = app.build_app(settings, "tok")
try:
    app.main(["--help"])
except SystemExit:
    pass
service.close()
leaked = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print("RAY_MODULES", leaked)
assert not leaked, leaked
"""


def test_embedded_mode_never_imports_ray(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NO_RAY, str(tmp_path / "data")], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                                                       "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "--engine {embedded,ray}" in done.stdout and "--replica-gpus" in done.stdout
    assert "RAY_MODULES []" in done.stdout


def test_ray_flags_and_environment() -> None:
    s = settings_from(["--engine", "ray", "--ray-address", "auto", "--replicas", "3", "--replica-cpus", "0.5",
                       "--replica-gpus", "1"], {})
    assert (s.engine_kind, s.ray.address, s.ray.replicas, s.ray.replica_cpus, s.ray.replica_gpus) == (
        "ray", "auto", 3, 0.5, 1.0)
    s = settings_from([], {"RERANKER_ENGINE": "ray", "RERANKER_REPLICAS": "2"})
    assert (s.engine_kind, s.ray.replicas, s.ray.address, s.ray.replica_gpus) == ("ray", 2, None, 0.0)
    assert settings_from([], {}).engine_kind == "embedded"


@pytest.mark.parametrize("argv, env, key", [([], {"RERANKER_ENGINE": "spark"}, "engine_kind"),
                                            (["--replicas", "0"], {}, "replicas"),
                                            ([], {"RERANKER_REPLICA_CPUS": "-1"}, "replica_cpus")])
def test_bad_engine_settings_name_the_setting(argv: list[str], env: dict[str, str], key: str) -> None:
    with pytest.raises(InputError, match=key):
        settings_from(argv, env)
