"""The read-only web dashboard: `rollout dashboard`, and the same pages on `rollout run --metrics-port`.

`look` reads what `rollout status` shows (a tick, the bot's open PRs, the specs on main, each rollout's
git history); `source` keeps the latest look for the server; `views` renders it as escaped HTML;
`series` answers the plots' data from Prometheus range queries; `server` serves the pages, their JSON,
the static files and, under `rollout run`, /metrics and /healthz.
"""
