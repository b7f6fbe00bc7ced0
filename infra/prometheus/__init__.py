"""Prometheus: alert rules, their tests, and a server of our own for the live tests and `make observe`."""
