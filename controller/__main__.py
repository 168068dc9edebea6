"""`python -m controller`: the same entry point as the `rollout` command."""

import sys

from controller import cli

sys.exit(cli.main())
