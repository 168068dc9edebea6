# Sourced by .ci/run and .ci/demo before they `pip install`. A stock Debian Python refuses pip outside a
# virtual environment (PEP 668, "externally managed"): there, make .venv in the checkout once (with
# Debian's python3-venv if ensurepip is missing) and use it, so `rollout` lands on PATH. Inside a virtual
# environment already (CI's setup-python, a developer's), or on a Python that lets pip install, nothing changes.
if python3 - <<'PY'
import os, sys, sysconfig
inside = sys.prefix != sys.base_prefix
sys.exit(0 if not inside and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)
PY
then
  if [ ! -x .venv/bin/python3 ]; then
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
      as_root=""
      [ "$(id -u)" = 0 ] || as_root="sudo"
      DEBIAN_FRONTEND=noninteractive $as_root apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091 # made just above
  . .venv/bin/activate
  echo "using the virtual environment $VIRTUAL_ENV (this Python is externally managed)" >&2
fi
