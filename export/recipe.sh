#!/usr/bin/env bash
# The exact recipe behind models/larsr-x4 (round 6: round 5 with a LAR that draws two codes per
# step). Each stage resumes from $RUN if it was interrupted; budgets are wall-clock minutes,
# --steps sets the length of the cosine schedule.
#
# Round 6 (shipped, 2026-12-01, a 2-core AMD EPYC with AVX-512 BF16: bf16 autocast 0.40 s/step vs
# fp32 0.58): `regroup` makes round 5's LAR draw positions s and s + 8 of a patch in step s (8 steps,
# half the cache, LAR margin 32 -> 16 LR px; export/regroup.py says how the weights start), then one
# LAR round `lar5` (11000 steps at 5e-4, 75 min): validation cross-entropy 2.97 -> 2.59 nats per code
# (round 5: 2.64). Every texture bar holds (records/larsr-x4-validation.json). Reproduce with
#   RUN=runs/larsr-x4-r6 STAGES="regroup lar5 export evaluate" bash export/recipe.sh
# (needs export/checkpoints/larsr-x4-round5.pt, committed); the result is
# export/checkpoints/larsr-x4-round6.pt.
#
# Round 5 (2026-12-01, a 2-core Intel Xeon with AMX, bf16 autocast): a coarse net in 16-channel blocks (coarse16: 32 features,
# growth 16, 16-channel HR head; 58.7 kFLOP/px instead of 98.6k, 0.44x its time in onnxruntime,
# records/coarse16-probe.json), trained from scratch with the coarse stage; then `graft` puts it
# under round 4's VQ-VAE and LAR (they read the coarse *image*; the oracle with the photo's own
# codes stayed at 31.8 dB on the detail set) and one LAR round (`lar4`, 2600 steps, 53 min) adapts
# the LAR to its images: validation cross-entropy 2.68 -> 2.64 nats (round 4: 2.67 on its own
# coarse net). Before `lar4` the argmax picture failed the stripe bar (excess 0.125), after it
# 0.067; every texture bar holds (records/larsr-x4-validation.json). Reproduce with
#   RUN=runs/larsr-x4-r5b STAGES="coarse16 graft lar4 export evaluate" bash export/recipe.sh
# (needs export/checkpoints/larsr-x4-round4.pt, committed; `coarse16` may be skipped by copying
# export/checkpoints/coarse16-probe.pt to runs/coarse16-probe/model.pt). The committed result is
# export/checkpoints/larsr-x4-round5.pt: to continue from it on a fresh machine, copy it to
# $RUN/model.pt and run a new `--round` of the stage to improve.
#
# Round 4 (the texture stages shipped since): config "base" with a cosine codebook, keeping round
# 3's coarse and LAR weights as a start (INIT, the round-3 run: its recipe is in git history) and
# retraining the VQ-VAE from scratch, because round 3's decoder had learned to
# ignore its codes: with the HR photo's own codes ("oracle", python -m export.oracle) it added
# 1/255 on average and gained 0.00 dB over the coarse net, so no sampler could make texture pay.
# Two causes, each measured on a 300-step probe: L1 keeps the decoder at its zero-residual start
# (the median of noise-like residuals is zero; an MSE term breaks out after ~200 steps, a
# 16-channel continuous bottleneck alone did not with L1), and plain L2 codes shrank with the
# commitment loss (3e-5) until they carried nothing; codes now live on the unit sphere
# (vq_cosine). A first attempt that mixed L1 (weight 1) with MSE (10) stayed pinned at the
# coarse image for 450 steps (L1's constant-size gradient outweighed MSE's on small residuals),
# so the VQ-VAE learns in two rounds: MSE alone until the codes carry the texture, then
# L1 + VGG features + stripe penalty + a small patch-GAN term (--gan-start) on top. Its LAR took
# three rounds (lar, lar2, lar3: val CE 2.93 -> 2.80 -> 2.66, lar3 stopped by hand when flat);
# export adds the residual back-projection (vq_lr_project=2, trained without it):
#   RUN=runs/larsr-x4-r4b STAGES="data vqvae vqvae2 oracle lar lar2 lar3 export evaluate" bash export/recipe.sh
# A from-scratch texture round on the coarse16 net (its VQ-VAE rounds are in
# records/larsr-x4-r5-training-log.jsonl) was set aside for the graft: its three LAR rounds need
# ~3.5 h of this CPU, the graft's one 53 min.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/larsr-x4-r6}
INIT=${INIT:-runs/larsr-x4-base/model.pt}
COARSE_RUN=${COARSE_RUN:-runs/coarse16-probe}
TEXTURE=${TEXTURE:-export/checkpoints/larsr-x4-round4.pt}
STAGES=${STAGES:-"data regroup lar5 export evaluate"}
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
    coarse16) python -m export.train --stage coarse --config base --override coarse_features=32 \
              --override coarse_growth=16 --override coarse_up_features=16 --run "$COARSE_RUN" --bf16 \
              --batch 16 --hr-size 96 --detail-tries 4 --minutes "${COARSE_MIN:-34}" --steps 14000 --lr 1e-3 \
              --log-every 100 ;;
    regroup) python -m export.regroup --checkpoint "${SOURCE:-export/checkpoints/larsr-x4-round5.pt}" \
              --codes-per-step 2 --out "$RUN/model.pt" ;;
    lar5) python -m export.train --stage lar --round 5 "${COMMON[@]}" --minutes "${LAR5_MIN:-75}" \
              --steps 11000 --lr 5e-4 --log-every 100 ;;
    graft) python -m export.graft --texture "$TEXTURE" --coarse "$COARSE_RUN/model.pt" --out "$RUN/model.pt" ;;
    lar4) python -m export.train --stage lar --round 4 "${COMMON[@]}" --minutes "${LAR4_MIN:-80}" \
              --steps 2600 --lr 3e-4 --log-every 100 ;;
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
