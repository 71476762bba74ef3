#!/usr/bin/env bash
# Build a dataset folder on a Slurm cluster: one array task per share, then a dependent finish.
#
#     jobid=$(sbatch --parsable --array=0-7 slurm_dataset.sh)
#     sbatch --dependency=afterok:$jobid slurm_dataset.sh --finish
#
# INPUT, TOKENIZER, DATASET and OPTIONS come from the environment (sbatch passes it on); every
# task and the finish must see the same values, on a filesystem they share.
#SBATCH --job-name=tokentype-dataset
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
set -euo pipefail
INPUT="${INPUT:-data.jsonl}"
TOKENIZER="${TOKENIZER:-tokenizer}"
DATASET="${DATASET:-dataset}"
read -r -a OPTIONS <<< "${OPTIONS:---max-seq-length 2048 --packing greedy::truncate_right --train-files 32 --dev-ratio 0.05 --shuffle --seed 0}"
build=(tokentype tokenize "$INPUT" --tokenizer "$TOKENIZER" --dataset "$DATASET" "${OPTIONS[@]}")

if [ "${1:-}" = "--finish" ]; then
    "${build[@]}" --finish --overwrite
    exec tokentype validate "$DATASET"
fi
"${build[@]}" --task "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" \
    --workers "${SLURM_CPUS_PER_TASK:-1}" --quiet
