"""``python -m netad <command>``: train, test, assess, compare, upload, predict, serve."""

import sys

from netad.cli import main

sys.exit(main())
