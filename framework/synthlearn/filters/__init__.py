"""The core's synthetic-image filters (kind ``filter``): ``near-copy`` and ``reid``."""
