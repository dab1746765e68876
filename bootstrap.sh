#!/usr/bin/env bash
# Set up a Debian machine for builder, idempotently: Debian's docker.io, debootstrap and vagrant, a
# running Docker engine, and builder itself with its test tools. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The test suite renders the HTML report in a real headless browser.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The vagrant backend (its Linux machines use Vagrant's docker provider, so no box is needed).
command -v vagrant >/dev/null 2>&1 || missing+=(vagrant)
# The vagrant backend and deploy reach machines with OpenSSH (ssh, ssh-keygen).
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
# The suite's second engine gets a bridge of its own (ip link add … type bridge).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

.ci/engine start  # a running Docker engine: started here if none answers

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
echo "bootstrap: ready"
