"""dermcli: dermoscopy classification research toolkit for HAM10000."""

__version__ = "0.1.0"
