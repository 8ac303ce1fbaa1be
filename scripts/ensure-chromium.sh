#!/usr/bin/env bash
# The report page is tested in a real headless browser: Debian's chromium.
# Installs it when missing (root on Debian, as on the project's machines).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing: install Debian's chromium package (the report page test needs it)" >&2
  exit 1
fi
echo "installing chromium for the report page test" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
