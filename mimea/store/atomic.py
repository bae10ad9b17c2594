"""Re-export of :mod:`mimea.atomic` (the run store's writes are atomic)."""
from mimea.atomic import _clean, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

__all__ = ["_clean", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "read_json"]
