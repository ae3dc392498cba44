#!/usr/bin/env bash
# The first commands to run on a GPU machine: the paths CI cannot run (CUDA copies from pinned
# memory, bf16 autocast on CUDA, torch.compile with inductor's CUDA kernels, fused AdamW, NCCL) and
# the speed of the paper's models, as tokens/s and MFU (printed by the training loop at each log step).
#
#     bash bench/gpu_check.sh [NGPUS]          # about 5 minutes on one H100/H200 after the install
#
# Compare with the official code: ~20 minutes per 1M proxy (1B tokens) on an A100.
set -euo pipefail
cd "$(dirname "$0")/.."
ngpu=${1:-1}
out=${OUT_DIR:-/tmp/regmix_gpu_check}
rm -rf "$out"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
# the embedded corpus with the full GPT-2 vocabulary (the paper's model sizes assume a ~50k vocabulary)
python prepare.py --vocab-size 50257 --out "$out/data" > /dev/null
echo '{"code": 1, "docs": 1, "legal": 1, "bible": 1, "c_headers": 1}' > "$out/uniform.json"
# 1. the 1M proxy at the paper's shapes (512 x 2048 tokens a step, micro-batch 16, compiled, bf16)
python regmix.py --stage train --model 1m --data "$out/data" --out "$out" --name proxy_1m --mixture "$out/uniform.json" \
    --steps 30 --warmup 5 --eval-seqs 4 --log-every 5
# 2. a whole proxy as the sweep runs it (one run of --stage proxy), its time against ~20 min per 1B tokens
python regmix.py --stage proxy --model 1m --data "$out/data" --out "$out/sweep" --n-mixtures 1 --steps 30 --warmup 5 --eval-seqs 4
# 3. the 1B target for a few steps (a smaller global batch so that it takes seconds), MFU per step
python regmix.py --stage train --model 1b --data "$out/data" --out "$out" --name target_1b --mixture "$out/uniform.json" \
    --steps 6 --warmup 2 --batch-size 32 --micro-batch-size 16 --eval-seqs 2 --log-every 1
# 4. NCCL data parallelism and a resume, when there is more than one GPU
if [ "$ngpu" -gt 1 ]; then
  torchrun --standalone --nproc_per_node "$ngpu" regmix.py --stage train --model 1m --data "$out/data" --out "$out" \
      --name ddp_1m --mixture "$out/uniform.json" --steps 20 --warmup 5 --eval-seqs 4 --ckpt-every 10 --log-every 5
fi
