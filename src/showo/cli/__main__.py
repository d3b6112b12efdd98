"""`python -m showo.cli`: the same as the `showo` console script."""
import sys

from .main import main

sys.exit(main())
