"""An example synthlearn plugin (see plugin.py)."""
