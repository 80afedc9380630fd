#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them.
#
#   - SIPp (Debian's sip-tester), baresip (a softphone) and tcpdump, for SIP calls from real
#     callers and to capture the RTP the bridge sends back (the DTMF scenario replays pcaps, so
#     the tests run as root);
#   - Python 3 with the `openai` package (in target/py), to check every Realtime client event
#     the bridge sends against the API's own schema;
#   - cmake, which the `opus` feature needs to build libopus;
#   - then `cargo test` over the library, the binary, the integration tests, and the benchmarks
#     in test mode (each benchmark runs once, as a smoke test), and the library's tests again
#     with the `opus` feature (Opus encode/decode, SDP with Opus).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
need_apt() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
if [ ${#missing[@]} -gt 0 ]; then
  need_apt "${missing[@]}"
fi
if ! command -v python3 >/dev/null 2>&1; then
  need_apt python3 python3-venv
fi
if ! target/py/bin/python -c 'import openai' >/dev/null 2>&1; then
  mkdir -p target
  python3 -m venv target/py || { need_apt python3-venv; python3 -m venv target/py; }
  target/py/bin/pip install --quiet --disable-pip-version-check openai
fi
export DIALTONE_PYTHON="$PWD/target/py/bin/python"

cargo test --locked --lib --bins --tests --benches
cargo test --locked --features opus --lib
