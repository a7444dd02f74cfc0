#!/usr/bin/env bash
# The exact recipe behind models/larsr-x4 (2-core AVX2 CPU, about 3 hours of training in two rounds).
# Each stage resumes from runs/larsr-x4 if it was interrupted; budgets are wall-clock minutes,
# --steps sets the length of the cosine schedule.
# Round 1 trains the three parts from scratch. Round 2 goes on from round 1's weights: the coarse
# net gets a longer second cosine cycle (it was still improving), then the VQ-VAE (with the coarse
# net refined jointly) and the LAR module are fine-tuned to the new coarse image, since both read it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/larsr-x4}
STAGES=${STAGES:-"data coarse vqvae lar coarse2 vqvae2 lar2 export evaluate"}
for stage in $STAGES; do
  case $stage in
    data) python -m export.data fetch data && python -m export.lpips convert ;;
    coarse) python -m export.train --stage coarse --run "$RUN" --minutes "${COARSE_MIN:-34}" \
              --steps 2600 --batch 16 --hr-size 96 --lr 1e-3 --log-every 50 ;;
    vqvae) python -m export.train --stage vqvae --run "$RUN" --minutes "${VQVAE_MIN:-18}" \
              --steps 2400 --batch 16 --hr-size 96 --lr 5e-4 --lpips 0.5 --log-every 50 ;;
    lar) python -m export.train --stage lar --run "$RUN" --minutes "${LAR_MIN:-45}" \
              --steps 2000 --batch 16 --hr-size 96 --lr 1e-3 --log-every 50 ;;
    coarse2) python -m export.train --stage coarse --run "$RUN" --minutes "${COARSE2_MIN:-48}" \
              --steps 14000 --batch 16 --hr-size 96 --lr 5e-4 --log-every 100 --round 2 ;;
    vqvae2) python -m export.train --stage vqvae --run "$RUN" --minutes "${VQVAE2_MIN:-12}" \
              --steps 800 --batch 16 --hr-size 96 --lr 2e-4 --lpips 0.5 --log-every 50 --round 2 ;;
    lar2) python -m export.train --stage lar --run "$RUN" --minutes "${LAR2_MIN:-36}" \
              --steps 1600 --batch 16 --hr-size 96 --lr 5e-4 --log-every 50 --round 2 ;;
    export) python -m export.to_onnx --checkpoint "$RUN/model.pt" --out models/larsr-x4 --name larsr-x4 \
              --data data/photos ;;
    evaluate) python -m export.evaluate --model models/larsr-x4 --data data/photos \
              --out "$RUN/evaluation.json" --write ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
