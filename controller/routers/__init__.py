"""Routers: the live traffic split of a route, one module per backend behind `base.Router`."""
