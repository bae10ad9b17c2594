"""Typed configs and profiles, seeding, the shared trainer and iterative bootstrapping."""
