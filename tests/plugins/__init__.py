"""Tests of voiced.plugins."""
