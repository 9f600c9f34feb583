"""The package version, in a module of its own so any layer can stamp it without importing `actiba`."""

__version__ = "0.1.0"
