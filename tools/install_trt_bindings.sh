#!/usr/bin/env bash
# Install the real TensorRT Python bindings (no native libraries) of every version the conformance tests
# check, each into its own folder .cache/trt/<version>/ (they all import as `tensorrt_bindings`, so they
# cannot share one environment). Folders already holding the module are left alone.
#
# Usage: tools/install_trt_bindings.sh [PYTHON]     (default: python3 on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"

# version  pip requirement (the native libraries are not installed: --no-deps)
VERSIONS=(
  "8.6.1       tensorrt-bindings==8.6.1"
  "10.3.0      tensorrt-cu12-bindings==10.3.0"
  "10.16.1.11  tensorrt-cu12-bindings==10.16.1.11"
  "11.4.0.106  tensorrt-cu13-bindings==11.4.0.106"
)

for line in "${VERSIONS[@]}"; do
  read -r version requirement <<<"$line"
  target=".cache/trt/$version"
  if [ -d "$target/tensorrt_bindings" ]; then
    echo "TensorRT $version bindings: already in $target"
    continue
  fi
  rm -rf "$target.part"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$target.part" "$requirement"
  rm -rf "$target"
  mv "$target.part" "$target"
  echo "TensorRT $version bindings: installed $requirement into $target"
done
