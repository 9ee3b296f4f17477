"""Learncast: turn raw L&D recordings into published podcast and video episodes."""

__version__ = "0.1.0"
