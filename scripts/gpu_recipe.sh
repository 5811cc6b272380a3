#!/usr/bin/env bash
# The local steps around the device calls of docs/GPU_RECIPE.md (`atelier recipe` on a lent GPU).
#
#   scripts/gpu_recipe.sh kit [PACK OPTIONS]  build gpu_kit/ (atelier recipe pack)
#   scripts/gpu_recipe.sh prepare             check the parts still fit a call; move the shipped weights aside
#   scripts/gpu_recipe.sh restore             move them back (checked against git)
#   scripts/gpu_recipe.sh unpack FILES...     the files the collect calls brought back -> runs/gpu/
#   scripts/gpu_recipe.sh home                runs/gpu_home/weights/ = every new file (ATELIER_HOME=runs/gpu_home)
#   scripts/gpu_recipe.sh adopt NETWORK...    copy those networks' new files into src/atelier/pretrained/
#                                             and print their SHIPPED sha256 lines
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
ASIDE=${ATELIER_ASIDE:-../atelier_pretrained_aside}
PRETRAINED=src/atelier/pretrained
RESULTS=${ATELIER_GPU_RESULTS:-runs/gpu}

case "${1:-}" in
  kit)
    shift
    "$PYTHON" -m atelier recipe pack "$@"
    ;;
  prepare)
    if compgen -G "$ASIDE/*.safetensors" > /dev/null; then
      echo "error: $ASIDE already holds weights (prepared before?); run '$0 restore' first" >&2; exit 2
    fi
    [ -f gpu_kit/manifest.json ] || "$PYTHON" -m atelier recipe pack
    "$PYTHON" -m atelier recipe pack --check
    mkdir -p "$ASIDE"
    mv "$PRETRAINED"/*.safetensors "$ASIDE"/
    echo "moved $(ls "$ASIDE"/*.safetensors | wc -l) weights files to $ASIDE; run '$0 restore' after the device calls"
    ;;
  restore)
    compgen -G "$ASIDE/*.safetensors" > /dev/null || { echo "nothing to restore in $ASIDE" >&2; exit 0; }
    for file in "$ASIDE"/*.safetensors; do
      target="$PRETRAINED/$(basename "$file")"
      if [ -e "$target" ]; then echo "error: $target exists; not overwriting it" >&2; exit 2; fi
      mv "$file" "$target"
    done
    rmdir "$ASIDE" 2>/dev/null || true
    if git diff --quiet -- "$PRETRAINED"; then
      echo "shipped weights restored (identical to git)"
    else
      echo "warning: $PRETRAINED differs from git:" >&2; git status --short -- "$PRETRAINED" >&2
    fi
    ;;
  unpack)
    shift
    "$PYTHON" -m atelier recipe unpack "$@" --into "$RESULTS"
    ;;
  home)
    mkdir -p runs/gpu_home/weights
    cp "$RESULTS"/*/*.safetensors "$RESULTS"/*/*.json runs/gpu_home/weights/
    rm -f runs/gpu_home/weights/summary.json runs/gpu_home/weights/history.json
    echo "ATELIER_HOME=runs/gpu_home now finds the new weights first ($(ls runs/gpu_home/weights/*.safetensors | wc -l) files)"
    ;;
  adopt)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 adopt NETWORK... (folders of $RESULTS)" >&2; exit 2; }
    for network in "$@"; do
      compgen -G "$RESULTS/$network/*.safetensors" > /dev/null || { echo "error: no weights in $RESULTS/$network" >&2; exit 2; }
      for file in "$RESULTS/$network"/*.safetensors; do
        stem=$(basename "$file" .safetensors)
        cp "$file" "$PRETRAINED/$stem.safetensors"
        cp "$RESULTS/$network/$stem.json" "$PRETRAINED/$stem.json"
        echo "    \"$stem\": \"$(sha256sum "$file" | cut -d' ' -f1)\","
      done
    done
    echo "paste these into SHIPPED in src/atelier/nets/pretrained.py, then run the tests" >&2
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
