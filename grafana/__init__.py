"""Grafana: the dashboard as code (dashboard.py) and its provisioning files."""
