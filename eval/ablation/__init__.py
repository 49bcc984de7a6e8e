"""The equal-budget ablation (issue 15): ``python -m eval.ablation run``.

Every variant (EDIC as shipped, EDIC without its mixture, enhancement or channel
attention, and CompressAI's Ballé and Minnen hyperprior coders) is trained by the
same loop (dvc_edic.train) on the same batches, under the same loss, seed and
learning-rate schedule, for the same process CPU time; then measured with real
bytes on the photos training held back, and timed decoding a 768x512 picture.
``plan`` reads the plan (configs/train/ablation/), ``runner`` trains and measures,
``measure`` holds the coders and the measurements, ``doc`` writes docs/ablations.md.
"""
