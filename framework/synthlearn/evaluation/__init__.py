"""Scoring: test metrics, the membership audit, fidelity and memorisation of synthetic images."""
