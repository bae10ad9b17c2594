"""Shared fixtures: the real data (skipped when absent), the default synthetic dataset, a tiny dataset factory."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: A tiny valid dataset: KG1 = ids 0..4 (a0..a4), KG2 = ids 5..9 (b0..b4). File path (under ROOT/NAME) -> text.
TINY_FILES: dict[str, str] = {
    "norm/ent_ids_1": "".join(f"{i}\ta{i}\n" for i in range(5)),
    "norm/ent_ids_2": "".join(f"{i + 5}\tb{i}\n" for i in range(5)),
    "norm/triples_1": "0\t0\t1\n1\t1\t2\n2\t0\t3\n3\t1\t4\n0\t0\t1\n",
    "norm/triples_2": "5\t2\t6\n6\t3\t7\n7\t2\t8\n8\t3\t9\n",
    "norm/ill_ent_ids": "0\t5\n1\t6\n2\t7\n3\t8\n",
    "norm/training_attrs_1": "a0\tp\tq\na1\tp\n",
    "norm/training_attrs_2": "b0\tx\nb2\tx\ty\n",
    "extra/names_1": "".join(f"{i}\tName {i}\n" for i in range(5)),
    "extra/names_2": "".join(f"{i + 5}\tName {i}\n" for i in range(5)),
    "extra/image_index_1": "0\n1\n2\n",
    "extra/image_index_2": "5\n6\n",
    "extra/PROVENANCE.md": "# tiny\n\n## Deviations from the original\n\n1. **First thing.** text\n"
                           "2. **Second thing** more\n",
}


def write_tiny(root: Path, name: str = "tiny", overrides: dict[str, str | bytes | None] | None = None) -> Path:
    """Write :data:`TINY_FILES` under ``root/name`` with ``overrides`` (None deletes a file); returns the folder."""
    files: dict[str, str | bytes | None] = {**TINY_FILES, **(overrides or {})}
    folder = Path(root) / name
    for rel, content in files.items():
        if content is None:
            continue
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return folder


@pytest.fixture
def tiny(tmp_path):
    """Factory: ``tiny(overrides=None, name="tiny") -> dataset folder`` in a fresh temp ROOT."""
    def make(overrides: dict | None = None, name: str = "tiny") -> Path:
        return write_tiny(tmp_path, name, overrides)

    return make


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """ROOT of the real data: ``$MIMEA_DATA_DIR`` or ``<repo>/../shared/data/mmkg``; skips when absent."""
    path = Path(os.environ.get("MIMEA_DATA_DIR") or REPO.parent / "shared" / "data" / "mmkg")
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set MIMEA_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> tuple[Path, str]:
    """The default synthetic dataset, generated once per session: ``(root, name)``."""
    from mimea.data.synthetic import ensure_synthetic

    return ensure_synthetic(tmp_path_factory.mktemp("synthetic-cache"))


@pytest.fixture(scope="session")
def synthetic_pair(synthetic_root):
    """The default synthetic dataset loaded as an :class:`MMKGPair` (mask policy, no names)."""
    from mimea.data.loader import load_pair

    return load_pair(*synthetic_root)
