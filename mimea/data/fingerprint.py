"""A content fingerprint of what a run reads from a dataset folder, so a run id covers its data.

The files: everything under ``ROOT/NAME/`` (``norm/``, ``extra/``) and the image features ``ROOT/pkls/NAME_*``.
The fingerprint hashes each file's path relative to ``ROOT``, its size and a SHA-256 of its bytes: the same data
in another folder or on another machine gives the same fingerprint (run ids stay stable across machines, so
committed run records keep matching); data edited in place gives another. File hashes are cached by
(path, size, mtime) in a JSON file when a cache path is given, so a large feature file is read once.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mimea.atomic import atomic_write_json
from mimea.hashing import sha256_file



def data_files(root: str | Path, name: str) -> list[Path]:
    """The files a run of dataset ``name`` under ``root`` may read, sorted."""
    root = Path(root)
    out = [p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith(".")]
    pkls = root / "pkls"
    if pkls.is_dir():
        out += [p for p in pkls.iterdir() if p.is_file() and p.name.startswith(f"{name}_")]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())



def _load_cache(cache: Path | None) -> dict:
    if cache is None or not cache.is_file():
        return {}
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):   # a damaged cache is only a cache: recompute
        return {}


def fingerprint(root: str | Path, name: str, cache: str | Path | None = None) -> str:
    """16 hex digits identifying the content of dataset ``name`` under ``root``."""
    root = Path(root)
    cache_path = Path(cache) if cache is not None else None
    known = _load_cache(cache_path)
    changed = False
    lines = []
    for p in data_files(root, name):
        st = p.stat()
        key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = known.get(key)
        if digest is None:
            digest = known[key] = sha256_file(p)
            changed = True
        lines.append(f"{p.relative_to(root).as_posix()}\t{st.st_size}\t{digest}")
    if not lines:
        raise FileNotFoundError(f"{root / name}: no data files")
    if changed and cache_path is not None:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache_path, known)
        except OSError:   # a read-only store: no cache, same fingerprint
            pass
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


__all__ = ["data_files", "fingerprint"]
