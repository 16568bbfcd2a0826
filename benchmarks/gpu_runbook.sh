#!/usr/bin/env bash
# Every GPU figure the issues ask for, in one command on a CUDA machine (an H100 or H200):
#
#   bash benchmarks/gpu_runbook.sh [OUT_DIR]        (from the project root; default $OUT or reports/gpu-runbook)
#
# 1. moe_decode.py --shape 1b: issue 8's table (ms/token and measured/roofline for dense 1.18B and the
#    OLMoE-1B-7B shape at batch 1, 8, 64, 256; eager, grouped_mm, batched_mm, harness, harness_triton and
#    the harness's torch paths)
# 2. roofline.py --shape 1b: issue 5 (dense 1B within 1.5x of its roofline; the MoE/dense crossover)
# 3. eval_speed.py on cuda: issue 7 (harness backend vs lm-eval's hf, requests/s and loglikelihood parity)
# 4. suites/longtail.yaml --scale gpu: issue 9 (training tokens/s and MFU, per-bucket accuracy)
# 5. suites/claims.yaml --scale gpu: issue 20 (the verdicts for claims 1, 2, 3 and 5 at the GPU scale,
#    MoE vs equal-active training tokens/s in its training table)
#
# Each step's output is kept in OUT_DIR/<step>.txt; a failing step is reported and the next one runs.
# Where the machine lacks pyzmq or lm-eval, put their wheels in .whl/ first
# (`pip download pyzmq lm-eval -d .whl` on a machine with the same Python); they are installed into /tmp/site from there, offline.
set -uo pipefail
out=${1:-${OUT:-reports/gpu-runbook}}
mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import zmq, lm_eval" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$out/device.txt"

failed=()
step() {  # step NAME COMMAND...
  local name=$1; shift
  echo "== $name: $*"
  if ! "$@" 2>&1 | tee "$out/$name.txt"; then failed+=("$name"); fi
}
step moe_decode python3 benchmarks/moe_decode.py --shape 1b --device cuda --dtype bfloat16 --paths
step roofline python3 benchmarks/roofline.py --shape 1b --device cuda --dtype bfloat16
step eval_speed python3 benchmarks/eval_speed.py --device cuda --hidden 1024 --layers 8
step longtail python3 -m harness.cli run suites/longtail.yaml --scale gpu --device cuda --out "$out/longtail"
step claims python3 -m harness.cli run suites/claims.yaml --scale gpu --device cuda --out "$out/claims"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed steps: ${failed[*]} (see $out/<step>.txt)"
  exit 1
fi
echo "all steps done: $out"
