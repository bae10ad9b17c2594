"""Run store: one folder per run (config, metrics, metadata, split), stable ids, atomic writes."""
from mimea.store.atomic import atomic_write_json, atomic_write_text, read_json
from mimea.store.ids import run_id
from mimea.store.runs import RunStore

__all__ = ["RunStore", "atomic_write_json", "atomic_write_text", "read_json", "run_id"]
