#!/usr/bin/env bash
# The GPU check in one command, for the lent GPU machine (Python 3.12 + torch with CUDA, no network,
# no pip index). Build the payload first, here: python -m ov3d_ros.bench.gpu_check pack [--train-data ...]
#
#   bash scripts/gpu_check.sh [--payload gpu_payload] [--out $OUT] [--train] [--device cpu] [run options]
#   bash scripts/gpu_check.sh --unpack-only SITE_DIR [--payload gpu_payload]
#
# 1. spconv: if the python here cannot import it, the payload's spconv-cu126 + cumm-cu126
#    site-packages are unpacked into a temporary folder and their pure-Python needs installed
#    there from the carried wheels (pip --no-index); the folder goes on PYTHONPATH.
# 2. the project: the checkout's ov3d_ros/src/ and training/ folders on PYTHONPATH (nothing installed).
# 3. python -m ov3d_ros.bench.gpu_check run: the cuda-marked tests, ov3d-bench --device cuda, and
#    with --train the sprint (teacher then student for fixed minutes); results under --out.
# Options after these are passed to `run` (see python -m ov3d_ros.bench.gpu_check run --help).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
PAYLOAD="$REPO/gpu_payload"
UNPACK_ONLY=""
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --payload) PAYLOAD="$(cd "$2" && pwd)"; shift 2 ;;
    --unpack-only) UNPACK_ONLY="$2"; shift 2 ;;
    *) PASS+=("$1"); shift ;;
  esac
done

unpack_bundle() {  # SITE: the spconv + cumm site-packages and their pure wheels, importable from SITE
  local site="$1" t
  mkdir -p "$site"
  for t in "$PAYLOAD"/device/spconv_cu126-*-site.tar.xz "$PAYLOAD"/device/cumm_cu126-*-site.tar.xz; do
    [ -f "$t" ] || { echo "gpu_check: bundle file missing: $t" >&2; return 2; }
    tar xJf "$t" -C "$site" || return 2
  done
  "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" \
    "$PAYLOAD"/device/*.whl || return 2
}

if [ -n "$UNPACK_ONLY" ]; then
  unpack_bundle "$UNPACK_ONLY"
  exit $?
fi

started=$(date +%s)
if ! "$PY" -c "import spconv" >/dev/null 2>&1; then
  SITE="$(mktemp -d /tmp/ov3d_site.XXXXXX)"
  unpack_bundle "$SITE" || exit 2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "[gpu_check] spconv bundle unpacked into $SITE in $(( $(date +%s) - started )) s"
else
  echo "[gpu_check] spconv already importable by $PY; bundle not unpacked"
fi
export PYTHONPATH="$REPO/ov3d_ros/src:$REPO/training${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
exec "$PY" -m ov3d_ros.bench.gpu_check run --payload "$PAYLOAD" "${PASS[@]}"
