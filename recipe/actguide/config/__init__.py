"""Hydra config of the recipe (a package so hydra finds it when the entry point is imported, e.g. actguide-train)."""
