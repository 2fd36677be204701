"""The package version, read by setuptools and by the package itself."""

__version__ = "0.6.0"
