"""Tests of the mic-path stages."""
