"""The Dockerfile's install steps, run for real: no Docker engine runs here, so the steps live
in deploy/install.sh, which the Dockerfile runs and this test runs in a fresh virtualenv, on
a copy of exactly what the Dockerfile copies into the image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bot.settings import PROJECT_ROOT

DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text("utf-8")
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}


def copied_paths() -> list[str]:
    """The sources of every COPY instruction in the Dockerfile."""
    paths: list[str] = []
    for line in DOCKERFILE.splitlines():
        match = re.match(r"^COPY\s+(.+)\s+\S+$", line.strip())
        if match:
            paths.extend(match.group(1).split())
    return paths


def test_the_dockerfile_runs_the_install_script() -> None:
    assert re.search(r"^RUN sh deploy/install\.sh", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^USER 10001", DOCKERFILE, re.MULTILINE)  # not root
    assert 'CMD ["python", "-m", "bot", "run"]' in DOCKERFILE
    assert "HEALTHCHECK" in DOCKERFILE and 'VOLUME ["/data"]' in DOCKERFILE


def test_the_install_script_works_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for source in copied_paths():
        origin = PROJECT_ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin, app / source, ignore=shutil.ignore_patterns("__pycache__", "*.mo")
            )
        else:
            shutil.copy2(origin, app / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # A clean environment, but the way to the package index kept: a CI runner behind a proxy
    # or with a mirror (PIP_INDEX_URL, PIP_FIND_LINKS) installs the same way `make` does.
    passed_on = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("PIP_") or name.lower() in _PROXY_VARIABLES
    }
    result = subprocess.run(
        ["sh", str(app / "deploy" / "install.sh")],
        env={"PYTHON": str(python), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **passed_on},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ok: dialogues" in result.stdout
    assert (app / "locales" / "cy" / "LC_MESSAGES" / "messages.mo").exists()
    # The installed environment imports every module the image runs (the digest's charts
    # and report, the poster's QR codes: none of which `bot check` imports), and has no
    # test tools.
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib, pkgutil, bot, state_machines, storage\n"
            "for package in (bot, state_machines, storage):\n"
            "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
            "        if not module.name.endswith('__main__'):  # which would run the bot\n"
            "            importlib.import_module(module.name)\n"
            "import importlib.util as u; print(u.find_spec('pytest') is None)",
        ],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "True", probe.stderr
