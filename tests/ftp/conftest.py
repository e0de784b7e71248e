import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ftptestlib import ftpd  # noqa: E402,F401  (the fixture)
