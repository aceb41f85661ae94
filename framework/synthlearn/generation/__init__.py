"""Synthetic data: conditioning schemes and sent generator files."""
