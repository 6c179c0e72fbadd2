"""`python -m wardrobe ...`: the same as the `wardrobe` console script."""

import sys

from wardrobe.cli import main

sys.exit(main())
