#!/usr/bin/env bash
# The first commands to run on a GPU machine: the paths CI cannot run (the fused Triton head,
# CUDA copies from pinned memory, bf16 autocast on CUDA, torch.compile with inductor's CUDA
# kernels, fused AdamW, NCCL) and the speed of the paper's models as tokens/s and MFU.
#
#     bash bench/gpu_check.sh [NGPUS] [options of bench/gpu_proxy.py, e.g. --profile]
#
# About 8 minutes on one H200 (most of it compilation). Compare with the official code: ~20
# minutes per 1M proxy (1B tokens) on an A100, about 875k tokens/s.
set -euo pipefail
cd "$(dirname "$0")/.."
ngpu=1
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then ngpu=$1; shift; fi
out=${OUT_DIR:-/tmp/regmix_gpu_check}
rm -rf "$out"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
# the embedded corpus with the full GPT-2 vocabulary (the paper's model sizes assume a ~50k vocabulary)
python prepare.py --vocab-size 50257 --out "$out/data" > /dev/null
# the device's matmul rate, the head's parity and speed, the presets at the paper's shapes, sweep layouts
python bench/gpu_proxy.py --data "$out/data" "$@"
# NCCL data parallelism and a resume, when there is more than one GPU
if [ "$ngpu" -gt 1 ]; then
  echo '{"code": 1, "docs": 1, "legal": 1, "bible": 1, "c_headers": 1}' > "$out/uniform.json"
  torchrun --standalone --nproc_per_node "$ngpu" regmix.py --stage train --model 1m --data "$out/data" --out "$out" \
      --name ddp_1m --mixture "$out/uniform.json" --steps 20 --warmup 5 --eval-seqs 4 --ckpt-every 10 --log-every 5
fi
