"""Offline test fixtures: the tiny SD-shaped base."""
