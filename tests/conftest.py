"""Shared fixtures: see tests/e2e/conftest.py for servers on port 0."""
