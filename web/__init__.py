"""Faust web views (installed as `atlas.web`)."""
