"""dermcli: dermoscopy classification research toolkit for HAM10000."""

from pathlib import Path

__version__ = "0.1.0"
# The checkout dermcli runs from (an editable install): where weights/ and examples/ live.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
