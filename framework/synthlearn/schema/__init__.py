"""Machine-readable descriptions of what synthlearn reads and writes.

``from_attrs`` turns attrs classes (recipe params, metrics.json's classes) into JSON
Schema (draft 2020-12); ``check`` validates a document against the subset of JSON
Schema those schemas use; ``recipe_schema`` builds the schema of recipes from the
installed plugins; ``params`` and ``describe`` read a component's params (name, type,
default, doc) for ``synthlearn describe`` and the docs' parameter tables.
"""
