#!/usr/bin/env bash
# The exact recipe behind models/larsr-x4 (2-core AVX2 CPU, about 100 minutes of training).
# Each stage resumes from runs/larsr-x4 if it was interrupted; budgets are wall-clock minutes,
# --steps sets the length of the cosine schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/larsr-x4}
STAGES=${STAGES:-"data coarse vqvae lar export evaluate"}
for stage in $STAGES; do
  case $stage in
    data) python -m export.data fetch data && python -m export.lpips convert ;;
    coarse) python -m export.train --stage coarse --run "$RUN" --minutes "${COARSE_MIN:-34}" \
              --steps 2600 --batch 16 --hr-size 96 --lr 1e-3 --log-every 50 ;;
    vqvae) python -m export.train --stage vqvae --run "$RUN" --minutes "${VQVAE_MIN:-18}" \
              --steps 2400 --batch 16 --hr-size 96 --lr 5e-4 --lpips 0.5 --log-every 50 ;;
    lar) python -m export.train --stage lar --run "$RUN" --minutes "${LAR_MIN:-45}" \
              --steps 2000 --batch 16 --hr-size 96 --lr 1e-3 --log-every 50 ;;
    export) python -m export.to_onnx --checkpoint "$RUN/model.pt" --out models/larsr-x4 --name larsr-x4 \
              --data data/photos ;;
    evaluate) python -m export.evaluate --model models/larsr-x4 --data data/photos \
              --out "$RUN/evaluation.json" --write ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
