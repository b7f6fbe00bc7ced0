"""Grafana: provisioning files and the dashboards (written by dashboards.py)."""
