"""Downstream classifiers: training settings and loops, the timm model component."""
