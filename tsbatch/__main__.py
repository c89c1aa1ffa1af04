"""``python -m tsbatch``: the ``tsbatch`` command."""

import sys

from tsbatch._cli import main

sys.exit(main())
