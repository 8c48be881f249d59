#!/usr/bin/env bash
# Installs what is missing for the local stack and the tests, and nothing else:
# Debian packages (checked with dpkg first) and the project's venv (re-synced only when
# pyproject.toml changes). Downloads are cached outside the work tree by pip and apt.
# `--for-tests` adds what only the tests use: Debian's Chromium, which the browser tests
# drive with Playwright (Playwright's own browser download needs the internet).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

debian_packages=(
  clamav clamav-daemon clamdscan
  tesseract-ocr tesseract-ocr-eng poppler-utils
  nginx postgresql libmagic1 fonts-dejavu-core
  libvips-tools
  libreoffice-core libreoffice-writer libreoffice-calc libreoffice-impress
  bubblewrap ffmpeg librsvg2-bin
)
if [ "${1:-}" = "--for-tests" ]; then
  debian_packages+=(chromium)
fi

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$root/.venv"
stamp="$venv/.pyproject.sha256"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing the project and its pinned dependencies into $venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e ".[dev]"
  echo "$want" >"$stamp"
fi
