"""Alignment models: the interface (:mod:`~mimea.models.base`), the registry, and MIMEA (:mod:`~mimea.models.mimea`).

MIMEA registers itself when :mod:`mimea.models.mimea` is imported; :func:`mimea.models.registry.get` imports it
lazily, so importing this package stays cheap.
"""
