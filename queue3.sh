#!/bin/bash
. /work/main/.venv/bin/activate
cd /work/data
while pgrep -f "out noisetest" > /dev/null; do sleep 10; done
python -m tts.train export noisetest --to noisetest.voice > noisetest_export.log 2>&1
./copy_eval.sh noisetest.voice slt copyslt_noise
