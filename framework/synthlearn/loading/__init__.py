"""Plugin loading: the plugin manager, the core's own components, code identities for cache keys."""
