"""Faust agents (installed as `atlas.agents`)."""
