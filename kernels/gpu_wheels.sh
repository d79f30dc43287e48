#!/usr/bin/env bash
# Wheels of the packages the engine's kernels and trainer import that a GPU machine's image
# lacks (soundfile and its cffi, librosa and the few of its needs the image has not, the text
# frontend's unidecode and num2words), for Python
# 3.12 on x86-64 Linux, into .whl/ (which travels with the working tree, and git ignores):
#
#   bash kernels/gpu_wheels.sh
#
# kernels/gpu_check.sh and train/gpu_session.sh install them from there, with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "soundfile>=0.12" "cffi>=1.0" pycparser "unidecode>=1.3" "num2words>=0.5.13" \
    "librosa>=0.10" soxr audioread decorator pooch platformdirs
ls -l .whl
