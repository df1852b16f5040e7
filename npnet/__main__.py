"""``python -m npnet train CONFIG.yaml``: the same as the ``npnet`` command."""
import sys

from .run.cli import main

sys.exit(main())
