#!/usr/bin/env bash
# Installs every system package the build, the tests and the demo need.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang clang-format clang-tidy libclang-rt-14-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libboost-dev libboost-system-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libyaml-cpp-dev
  libcurl4-openssl-dev libssl-dev libsqlite3-dev libcli11-dev libtinyxml2-dev
  libgtest-dev libgmock-dev
  ffmpeg jq curl
  python3 python3-botocore python3-boto3 python3-grpcio python3-protobuf python3-pytest python3-yaml
  prometheus wrk hyperfine
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from Debian (nodejs + npm) or from an image that bundles npm
# with its own nodejs package; only ask apt when the commands are missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The prometheus package starts a server we do not want; only promtool is used.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
pkill -x prometheus >/dev/null 2>&1 || true
echo "install-deps: done"
