#!/usr/bin/env bash
# Install Debian's chromium package, which the monitor page's browser test drives headless.
# Safe to run again: it does nothing when /usr/bin/chromium exists.
# Needs: a Debian or Ubuntu system, run as root (CI does) or through sudo.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: apt-get not found. Install Chromium with this system's package manager so that $CHROMIUM exists" >&2
  exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "error: installing chromium needs root. Run this script as root or install sudo" >&2
    exit 1
  fi
  SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium

if [ ! -x "$CHROMIUM" ]; then
  echo "error: apt-get installed chromium but $CHROMIUM is missing. Check the package's file list with: dpkg -L chromium" >&2
  exit 1
fi
echo "installed $("$CHROMIUM" --version)"
