"""Placeholder package of synthlearn's Flower App Bundle."""
