#!/usr/bin/env bash
# Reproduce a packaged model from this repository and ../shared/data:
#
#   bash training/reproduce_default_model.sh [RUN_ROOT] [--install] [--sim-only]
#
# Default: the default model v4 (ov3d_ros/src/ov3d_ros/weights/default), trained on simulated AND real rooms:
#   simulated recordings + real ScanNet rooms (../shared/data/scannet_rooms, scene0005 and scene0008
#   held out for validation) -> MPEC teacher -> student distilled from it, warm-started from the
#   simulation-only student (ov3d_ros/src/ov3d_ros/weights/sim_only) -> GGP calibration -> accuracy report.
#   It inherits ScanNet's terms (non-commercial research): see its model card.
# --sim-only: the simulation-only model v3 (ov3d_ros/src/ov3d_ros/weights/sim_only), without ScanNet's terms:
#   simulated recordings -> MPEC teacher -> student -> GGP calibration -> accuracy report.
#
# RUN_ROOT (default runs/default_model, or runs/sim_only_model) receives sim/, real/, mpec/,
# distill/, sim_held_out/ and report/. With --install the student replaces the packaged model
# (its model card, README.md there, is kept). Times on a 2-core CPU: docs/training.md. Every
# stage resumes where it stopped if the script is run again. Needs the `sweethome3d-furniture`
# apt package (the furniture models) and ../shared/data (real rooms, validation and report scans).
set -euo pipefail

ROOT=""
INSTALL=0
SIM_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --install) INSTALL=1 ;;
    --sim-only) SIM_ONLY=1 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) ROOT="$arg" ;;
  esac
done
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED_DATA="${OV3D_SHARED_DATA:-$REPO/../shared/data}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if [ "$SIM_ONLY" = 1 ]; then
  ROOT="${ROOT:-runs/sim_only_model}"
  TARGET="$REPO/ov3d_ros/src/ov3d_ros/weights/sim_only"
  MPEC_RECIPE="$REPO/training/configs/mpec_cpu.yaml"
  DISTILL_RECIPE="$REPO/training/configs/distill_cpu.yaml"
  DATA=("$ROOT/sim")
  INIT=()
else
  ROOT="${ROOT:-runs/default_model}"
  TARGET="$REPO/ov3d_ros/src/ov3d_ros/weights/default"
  MPEC_RECIPE="$REPO/training/configs/mpec_cpu_real.yaml"
  DISTILL_RECIPE="$REPO/training/configs/distill_cpu_real.yaml"
  DATA=("$ROOT/sim" "$ROOT/real/train@5")  # the 12 real scans enter each epoch 5 times
  INIT=(--set "init=$REPO/ov3d_ros/src/ov3d_ros/weights/sim_only")
fi

# 1. 80 simulated rooms (deterministic in the seed)
if [ ! -f "$ROOT/sim/scene_0079/metadata.yaml" ]; then
  ov3d-train sim --scenes 80 --seed 0 --workers 1 --out "$ROOT/sim"
fi

# 2. real rooms with their texts (train/ and the held-out val/)
if [ "$SIM_ONLY" = 0 ] && [ ! -d "$ROOT/real/val" ]; then
  ov3d-train scannet-rooms --src "$SHARED_DATA/scannet_rooms" --out "$ROOT/real" --hold-out scene0005 scene0008
fi

# 3. the teacher (MPEC, 5 cm)
if [ ! -f "$ROOT/mpec/teacher/teacher.json" ]; then
  if [ -f "$ROOT/mpec/config.yaml" ]; then
    ov3d-train mpec --out "$ROOT/mpec" --resume
  else
    ov3d-train mpec --config "$MPEC_RECIPE" --data "${DATA[@]}" --out "$ROOT/mpec"
  fi
fi

# 4. the student (geometric + semantic distillation from the teacher)
if [ ! -f "$ROOT/distill/student/model.json" ]; then
  if [ -f "$ROOT/distill/config.yaml" ]; then
    ov3d-train distill --out "$ROOT/distill" --resume
  else
    ov3d-train distill --config "$DISTILL_RECIPE" --teacher "$ROOT/mpec" --data "${DATA[@]}" \
      --out "$ROOT/distill" "${INIT[@]}"
  fi
fi

# 5. GGP's cells, tau, T and centering for this student, chosen on 24 held-out simulated rooms
#    (never on the real scans; indices 1000-1023 are outside the training rooms 0-79), recorded in
#    its model.json
if [ ! -f "$ROOT/sim_held_out/scene_1023/metadata.yaml" ]; then
  ov3d-train sim --scenes 24 --start 1000 --seed 0 --workers 1 --out "$ROOT/sim_held_out"
fi
if ! grep -q '"calibration"' "$ROOT/distill/student/model.json"; then
  ov3d-train calibrate --student "$ROOT/distill/student" --data "$ROOT/sim_held_out" --install
fi

# 6. the accuracy report (docs/accuracy.md shows the shipped model's)
ov3d-train report --student "$ROOT/distill/student" --teacher "$ROOT/mpec/teacher" --out "$ROOT/report"

if [ "$INSTALL" = 1 ]; then
  mkdir -p "$TARGET"
  cp "$ROOT/distill/student/model.safetensors" "$ROOT/distill/student/model.json" \
    "$ROOT/distill/student/ggp_calibration.json" "$TARGET/"
  echo "installed the student at $TARGET (update its README.md model card with $ROOT/report/report.md)"
fi
