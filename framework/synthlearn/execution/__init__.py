"""Running a recipe: the run, its directory, setup sanity checks."""
