"""``python -m captum_classpattern.cli``: the same as the ``classpattern`` command."""

import sys

from ._main import main

sys.exit(main())
