#!/usr/bin/env bash
# Train for a fixed time on a GPU machine from a feature pack, then export the run as a voice.
#
#   bash train/gpu_session.sh PACK MINUTES OUT_DIR [TASK] [python -m tts.train args...]
#   bash train/gpu_session.sh corpus.npz 10 $OUT vocoder --preset gpu
#
# PACK comes from `python -m tts.train.pack build`; TASK is vocoder (default), parallel or attention.
# The run starts from tts/voices/default where that voice holds a model of the task's kind
# (unless the extra args give --init), else from scratch. After MINUTES the trainer gets
# SIGTERM, checkpoints at the next step boundary and stops (the gpu preset also checkpoints
# every minute, so a machine taken back early loses at most a minute); OUT_DIR/voice then
# holds the exported model, the run's log.jsonl and throughput.txt: four files.
#
# It installs nothing from a registry: the GPU machine has no network. The packages its image
# lacks travel as wheels in .whl/ (bash kernels/gpu_wheels.sh, beforehand, where pip works)
# and go into a folder of their own on PYTHONPATH. PYTHON names the interpreter (default python3).
set -euo pipefail

if (( $# < 3 )); then
  echo "usage: $0 PACK MINUTES OUT_DIR [TASK] [python -m tts.train args...]" >&2
  exit 2
fi
pack=$(realpath "$1"); minutes=$2; out=$(realpath -m "$3"); task=${4:-vocoder}
shift $(( $# < 4 ? $# : 4 ))
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
needs="import torch, soundfile, librosa, unidecode, num2words, tts.audio, tts.train.pack"
if ! "$python" -c "$needs" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" .whl/*.whl
  export PYTHONPATH=$PYTHONPATH:$work/site
fi
if ! missing=$("$python" -c "$needs" 2>&1); then
  echo "error: the trainer cannot import what it needs (${missing##*$'\n'}): carry wheels in .whl/" >&2
  exit 1
fi

"$python" -m tts.train.pack unpack "$pack" --to "$work/data"
# The cache was built with the pack's trim_db; the task must look for it under the same key.
trim=$("$python" -c 'import json, glob, sys; t = json.load(open(glob.glob(sys.argv[1])[0]))["trim_db"]; print("none" if t is None else t)' \
  "$work/data/.cache/*/manifest.json")
args=(--data "$work/data" --out "$work/run" "$@" --set "trim_db=$trim")

# --print-config loads the voice's model and refuses one of another kind than the task trains.
if [[ " $* " != *" --init "* ]] &&
   "$python" -m tts.train "$task" "${args[@]}" --init tts/voices/default --print-config >/dev/null 2>&1; then
  args+=(--init tts/voices/default)
fi

gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)  # none: no nvidia-smi
if (( gpus > 1 )); then
  launch=("$python" -m torch.distributed.run --standalone --nproc_per_node="$gpus" -m tts.train)
else
  launch=("$python" -m tts.train)
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
"$python" -m tts.train export "$work/run" --to "$out/voice" --alone
cp "$work/run/log.jsonl" "$out/voice/"
"$python" -m tts.train.bench --report "$work/run" | tee "$out/voice/throughput.txt"
