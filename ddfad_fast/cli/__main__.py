"""``python -m ddfad_fast.cli COMMAND ...`` (what torchrun starts)."""
import sys

from .entry import main

sys.exit(main())
