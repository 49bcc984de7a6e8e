#!/usr/bin/env bash
# Continue the training campaign for a few minutes on a lent GPU, from train_state/resume.pt.
#
# Why a script: a GPU is lent to some sessions only, for about 15 minutes in all, and a
# machine that starts bare and reaches no package index. Everything it needs travels with
# the working tree, prepared on the CPU machine beforehand (see train_state/README.md):
#   .whl/       wheels the GPU image lacks (compressai, constriction, pytorch-msssim)
#   .gpu/data/  the training photos as JPEG (q90 / q85), small enough to travel (64 MiB)
# The campaign is the CPU's own (same plan, stages, shares and resume file); only the
# machine's settings differ, given with --set. A short segment runs first, so a failure
# costs a minute, not the lease. The resume file comes back split in parts under 16 MiB
# (the device returns no larger file): cat "$OUT"/resume.pt.part-* > resume.pt.
#
#   bash train_state/gpu_session.sh [MINUTES]     (in the repository root; default 7)
#
# The environment can point it elsewhere (tests/test_campaign.py runs it on the CPU with
# the tiny plan): GPU_PLAN, GPU_STATE, GPU_LEDGER, GPU_DATA (a folder holding images/ and
# images_research/; without it the stage configs' own data), GPU_WHEELS, GPU_SETS (the
# --set values) and GPU_FIRST_MINUTES (the first segment).
set -euo pipefail
minutes="${1:-7}"
out="${OUT:-runs/gpu_out}"
plan="${GPU_PLAN:-configs/train/campaign.yaml}"
state="${GPU_STATE:-train_state/resume.pt}"
ledger="${GPU_LEDGER:-train_state/ledger.csv}"
data="${GPU_DATA:-$PWD/.gpu/data}"
first="${GPU_FIRST_MINUTES:-1}"
wheels="${GPU_WHEELS:-.whl}"
read -r -a machine <<< "${GPU_SETS:-device=cuda batch_size=16 num_workers=10 threads=4}"
mkdir -p "$out"

if compgen -G "$wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
sets=()
for value in "${machine[@]}"; do sets+=(--set "$value"); done
if [ -d "$data/images" ]; then
    # The photo sources of configs/train/1_image.yaml, without the video clips (too large
    # to travel; PyAV is not in the GPU image either).
    export HOME=/tmp/gpu_home
    mkdir -p "$HOME/data"
    ln -sfn "$data/images" "$HOME/data/images"
    ln -sfn "$data/images_research" "$HOME/data/images_research"
    sets+=(--set "data.train=[{type: images, root: ~/data/images, crop: [256, 256],
        samples_per_epoch: 4000, holdout: {fraction: 0.1, seed: 0}},
        {type: images, root: ~/data/images_research, crop: [256, 256],
        samples_per_epoch: 3000}]")
fi
nvidia-smi -L 2>/dev/null || true

run() {
    python3 -m dvc_edic.train.campaign --hours 60 --session-hours "$1" --plan "$plan" \
        --state "$state" --ledger "$ledger" --compact-to "$state" --start "${sets[@]}" \
        2>&1 | tee -a "$out/campaign.log"
}
hours() { python3 -c "print($1 / 60)"; }
run "$(hours "$first")"  # a short segment: fails fast if anything is off
run "$(hours "max($minutes - $first, $first)")"

split -b 15M -d "$state" "$out/resume.pt.part-"
cp "$ledger" "$out/ledger.csv"
sha256sum "$state" | tee "$out/resume.sha256"
