"""The Flower App Bundle a synthlearn run submits (its source folder, built at run time)."""
