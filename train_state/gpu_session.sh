#!/usr/bin/env bash
# Continue the training campaign for a few minutes on a lent GPU, from train_state/resume.pt.
#
# Why a script: a GPU is lent to some sessions only, for about 15 minutes in all, and a
# machine that starts bare and reaches no package index. Everything it needs travels with
# the working tree, prepared on the CPU machine beforehand (see train_state/README.md):
#   .whl/       wheels the GPU image lacks (compressai, constriction, pytorch-msssim)
#   .gpu/data/  the training photos as JPEG (q90 / q85), small enough to travel (64 MiB)
# The campaign is the CPU's own (same plan, stages, shares and resume file); only the
# machine's settings differ, given with --set. A one-minute segment runs first, so a
# failure costs a minute, not the lease. The resume file comes back split in parts under
# 16 MiB (the device returns no larger file): cat "$OUT"/resume.pt.part-* > resume.pt.
#
#   bash train_state/gpu_session.sh [MINUTES]     (in the repository root; default 7)
set -euo pipefail
minutes="${1:-7}"
out="${OUT:-runs/gpu_out}"
mkdir -p "$out"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
export HOME=/tmp/gpu_home
mkdir -p "$HOME/data"
ln -sfn "$PWD/.gpu/data/images" "$HOME/data/images"
ln -sfn "$PWD/.gpu/data/images_research" "$HOME/data/images_research"
nvidia-smi -L || true

# The photo sources of configs/train/1_image.yaml, without the video clips (too large to
# travel; PyAV is not in the image either).
photos='[{type: images, root: ~/data/images, crop: [256, 256], samples_per_epoch: 4000,
          holdout: {fraction: 0.1, seed: 0}},
         {type: images, root: ~/data/images_research, crop: [256, 256],
          samples_per_epoch: 3000}]'
run() {
    python3 -m dvc_edic.train.campaign --hours 60 --session-hours "$1" \
        --compact-to train_state/resume.pt \
        --set device=cuda --set batch_size=16 --set num_workers=10 --set threads=4 \
        --set "data.train=$photos" 2>&1 | tee -a "$out/campaign.log"
}
run 0.0167            # one minute: fails fast if anything is off
run "$(python3 -c "print(max($minutes - 1, 1) / 60)")"

split -b 15M -d train_state/resume.pt "$out/resume.pt.part-"
cp train_state/ledger.csv "$out/ledger.csv"
sha256sum train_state/resume.pt | tee "$out/resume.sha256"
