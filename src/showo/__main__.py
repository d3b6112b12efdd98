"""`python -m showo`: the same as the `showo` console script (and `python -m showo.cli`)."""
import sys

from .cli.main import main

sys.exit(main())
