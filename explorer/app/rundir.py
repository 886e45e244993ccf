"""Run directories: ``runs/<name>/`` with the resolved config, provenance, logs, checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from explorer.core.config import save_config

__all__ = ["META_FILE", "create_run_dir", "read_meta", "record_resume"]

META_FILE = "meta.json"


def _git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=False, timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def create_run_dir(cfg: Any, argv: list[str]) -> Path:
    """Make a fresh ``<runs_dir>/<name>`` (``<name>-2``, ``-3``... if taken) and save the config."""
    root = Path(cfg.runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    run_dir, n = root / cfg.name, 1
    while True:
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            n += 1
            run_dir = root / f"{cfg.name}-{n}"
    save_config(cfg, run_dir / "config.yaml")
    meta = {"git": _git_hash(), "argv": argv, "python": sys.version.split()[0],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumes": 0}
    (run_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return run_dir


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / META_FILE
    return json.loads(path.read_text()) if path.exists() else {"resumes": 0}


def record_resume(run_dir: Path, cfg: Any, argv: list[str]) -> int:
    """Count one more resume of ``run_dir`` and save its (maybe overridden) config."""
    meta = read_meta(run_dir)
    meta["resumes"] = int(meta.get("resumes", 0)) + 1
    meta.setdefault("resume_argv", []).append(argv)
    (run_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    save_config(cfg, run_dir / "config.yaml")
    return meta["resumes"]
