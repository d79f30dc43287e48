#!/usr/bin/env bash
# Train for a fixed time on a GPU machine from a feature pack, then export the run as a voice.
#
#   bash train/gpu_session.sh PACK MINUTES OUT_DIR [TASK] [python -m train args...]
#
# PACK comes from `python -m train.pack build`; TASK is parallel (default), acoustic or vocoder.
# The run starts from tts/voices/default where that voice holds a model of the task's kind
# (unless the extra args give --init), else from scratch. After MINUTES the trainer gets
# SIGTERM, checkpoints at the next step boundary and stops; OUT_DIR/voice then holds the
# exported model and the run's log.jsonl.
set -euo pipefail

if (( $# < 3 )); then
  echo "usage: $0 PACK MINUTES OUT_DIR [TASK] [python -m train args...]" >&2
  exit 2
fi
pack=$(realpath "$1"); minutes=$2; out=$(realpath -m "$3"); task=${4:-parallel}
shift $(( $# < 4 ? $# : 4 ))
cd "$(dirname "$0")/.."

# torch with CUDA comes from PyPI's wheels; nothing is installed where torch and the engine import.
if ! python3 -c "import torch, tts" 2>/dev/null; then
  [[ -d .venv ]] || python3 -m venv .venv
  source .venv/bin/activate
  python3 -c "import torch, tts" 2>/dev/null || { pip install torch && pip install -e .; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m train.pack unpack "$pack" --to "$work/data"
# The cache was built with the pack's trim_db; the task must look for it under the same key.
trim=$(python3 -c 'import json, glob, sys; t = json.load(open(glob.glob(sys.argv[1])[0]))["trim_db"]; print("none" if t is None else t)' \
  "$work/data/.cache/*/manifest.json")
args=(--data "$work/data" --out "$work/run" --set "trim_db=$trim" "$@")

# --print-config loads the voice's model and refuses one of another kind than the task trains.
if [[ " $* " != *" --init "* ]] &&
   python3 -m train "$task" "${args[@]}" --init tts/voices/default --print-config >/dev/null 2>&1; then
  args+=(--init tts/voices/default)
fi

gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)  # none: no nvidia-smi
if (( gpus > 1 )); then
  launch=(python3 -m torch.distributed.run --standalone --nproc_per_node="$gpus" -m train)
else
  launch=(python3 -m train)
fi
# timeout signals the whole process group: every rank saves at its next step boundary (DataLoader
# workers ignore the signal). A trainer still running two minutes later is killed.
status=0
timeout --signal=TERM --kill-after=120 "${minutes}m" "${launch[@]}" "$task" "${args[@]}" || status=$?
if (( status != 0 && status != 124 )); then
  echo "training failed (exit $status)" >&2
  exit "$status"
fi

mkdir -p "$out"
python3 -m train export "$work/run" --to "$out/voice"
cp "$work/run/log.jsonl" "$out/voice/"
