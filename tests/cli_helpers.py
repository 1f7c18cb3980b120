"""Running the command line as a user would: a fresh interpreter, without this process's CARTESIA_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["clean_env", "run_cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CARTESIA_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    env.update(extra)
    return env


def run_cli(
    *args: str, timeout: float = 60, cwd: Path | str | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cartesia_sync ARGS`` in a clean environment (plus ``env_extra``); its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "cartesia_sync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**(env_extra or {})),
        cwd=cwd,
    )
