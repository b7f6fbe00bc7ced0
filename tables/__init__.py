"""Faust table definitions (installed as `atlas.tables`)."""
