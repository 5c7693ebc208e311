"""``python -m streamdrift`` is the ``streamdrift`` command."""

import sys

from streamdrift.cli import main

sys.exit(main())
