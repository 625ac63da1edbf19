"""``python -m dla_nas.cli``: the same as the ``dla-nas`` command."""

import sys

from . import main

sys.exit(main())
