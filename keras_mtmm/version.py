"""The package version (a leaf module: the export metadata and setup.py read it)."""

__version__ = "0.1.0"
