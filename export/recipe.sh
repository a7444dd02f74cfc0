#!/usr/bin/env bash
# The exact recipe behind models/larsr-x4 (round 4: config "base" with a cosine codebook, on a
# 2-core Intel Xeon with AMX, bf16 autocast). Each stage resumes from $RUN if it was interrupted;
# budgets are wall-clock minutes, --steps sets the length of the cosine schedule.
#
# Round 4 keeps round 3's coarse and LAR weights as a start (INIT, the round-3 run: its recipe is
# in git history) and retrains the VQ-VAE from scratch, because round 3's decoder had learned to
# ignore its codes: with the HR photo's own codes ("oracle", python -m export.oracle) it added
# 1/255 on average and gained 0.00 dB over the coarse net, so no sampler could make texture pay.
# Two causes, each measured on a 300-step probe: L1 keeps the decoder at its zero-residual start
# (the median of noise-like residuals is zero; an MSE term breaks out after ~200 steps, a
# 16-channel continuous bottleneck alone did not with L1), and plain L2 codes shrank with the
# commitment loss (3e-5) until they carried nothing; codes now live on the unit sphere
# (vq_cosine). A first attempt that mixed L1 (weight 1) with MSE (10) stayed pinned at the
# coarse image for 450 steps (L1's constant-size gradient outweighed MSE's on small residuals),
# so the VQ-VAE now learns in two rounds: MSE alone until the codes carry the texture, then
# L1 + VGG features + stripe penalty + a small patch-GAN term (--gan-start) on top.
#
# Status (2026-12-01, shipped): round 4's VQ-VAE works (oracle on the detail set 31.8 dB, DISTS
# 0.105, records/larsr-x4-oracle.json); its LAR took three rounds (lar, lar2, lar3: val CE 2.93 ->
# 2.80 -> 2.66, lar3 stopped by hand when flat); export adds the residual back-projection
# (vq_lr_project=2, trained without it). Every bar of the texture issue holds at the default T=0.6,
# texture 0.5 (records/larsr-x4-validation.json). To continue from the shipped weights on a fresh
# machine,
#   mkdir -p runs/larsr-x4-r4b && cp export/checkpoints/larsr-x4-round4.pt runs/larsr-x4-r4b/model.pt
#   STAGES="lar3 export evaluate" OUT=/tmp/candidate bash export/recipe.sh   # or a new round
#
# Round 5 (in progress, not shipped): the same stages on a coarse net in 16-channel blocks
# (records/coarse16-probe.json: scores like round 3's coarse at 0.44x its time), started with
#   RUN=runs/larsr-x4-r5 INIT=export/checkpoints/coarse16-probe.pt STAGES="vqvae vqvae2" bash export/recipe.sh
# and continued from export/checkpoints/larsr-x4-r5-progress.pt (copy it to runs/larsr-x4-r5/model.pt,
# then STAGES="oracle lar lar2 lar3 export evaluate" OUT=/tmp/candidate with the same RUN).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/larsr-x4-r4b}
INIT=${INIT:-runs/larsr-x4-base/model.pt}
STAGES=${STAGES:-"data vqvae vqvae2 oracle lar lar2 lar3 export evaluate"}
COMMON=(--config base --run "$RUN" --bf16 --batch 16 --hr-size 96 --detail-tries 4)
for stage in $STAGES; do
  case $stage in
    data) python -m export.data fetch data && python -m export.lpips convert ;;
    coarse) python -m export.train --stage coarse "${COMMON[@]}" --minutes "${COARSE_MIN:-36}" \
              --steps 14000 --lr 1e-3 --log-every 100 ;;
    vqvae) python -m export.train --stage vqvae "${COMMON[@]}" --minutes "${VQVAE_MIN:-30}" \
              --init "$INIT" --reinit vqvae --override vq_cosine=true \
              --steps 2000 --lr 5e-4 --l1 0 --mse 25 --lpips 0 --no-joint-coarse --log-every 50 ;;
    vqvae2) python -m export.train --stage vqvae --round 2 "${COMMON[@]}" --minutes "${VQVAE2_MIN:-25}" \
              --steps 1500 --lr 3e-4 --l1 1 --mse 25 --lpips 0.1 --lpips-net vgg --stripes 0.1 \
              --gan 0.05 --gan-start 300 --no-joint-coarse --log-every 50 ;;
    oracle) python -m export.oracle --checkpoint "$RUN/model.pt" --json > "$RUN/oracle.json" ;;
    lar) python -m export.train --stage lar "${COMMON[@]}" --minutes "${LAR_MIN:-50}" \
              --steps 6000 --lr 1e-3 --log-every 100 ;;
    lar2) python -m export.train --stage lar --round 2 "${COMMON[@]}" --minutes "${LAR2_MIN:-60}" \
              --steps 6000 --lr 5e-4 --log-every 100 ;;
    lar3) python -m export.train --stage lar --round 3 "${COMMON[@]}" --minutes "${LAR3_MIN:-115}" \
              --steps 10000 --lr 4e-4 --log-every 100 ;;
    export) python -m export.to_onnx --checkpoint "$RUN/model.pt" --out "${OUT:-models/larsr-x4}" --name larsr-x4 \
              --data data/photos --override vq_lr_project=2 ;;
    evaluate) python -m export.evaluate --model "${OUT:-models/larsr-x4}" --data data/photos \
              --out "$RUN/evaluation.json" --temperatures 0 0.6 1 --textures 0.25 0.5 0.75 1 --write ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
