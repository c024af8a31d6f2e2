"""The pack is tested from its source folder, installed or not: put that folder on sys.path."""

import sys
from pathlib import Path

PACK_ROOT = Path(__file__).parents[1]
if str(PACK_ROOT) not in sys.path:
    sys.path.insert(0, str(PACK_ROOT))
