"""mimea: a reproducibility benchmark suite for multi-modal entity alignment (MIMEA and its baselines)."""
__version__ = "0.1.0"
