"""The controller loop: observe, decide, act, verify. The only package that acts through several
adapters at once (the CLI and the demo build them and hand them in).

Each tick fetches the remote, reads the desired state from `origin/<branch>`, measures every gate in
one batch, then in three passes, errors isolated per rollout: decide (read each live route, ask
`plan.decide`), write (per router, every route that changes in one batch, read back), and act on the
forge (pull requests are find-or-update by their branch, one per (rollout, action, revision)), each
rollout with its own write's result. Canary exposure grows only when such a PR is merged; it shrinks
at once.

`tick` is the tick itself and the commands by hand; `observe`, `writes` and `pulls` are its passes.
What a pull request says is `controller.proposals`'.
"""

from __future__ import annotations

from controller.reconcile.observe import RouterFactory
from controller.reconcile.tick import Controller, Outcome, Tick

__all__ = ["Controller", "Outcome", "RouterFactory", "Tick"]
