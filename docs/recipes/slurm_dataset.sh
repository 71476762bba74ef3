#!/usr/bin/env bash
# Build a dataset folder on a Slurm cluster: one array task per share, then a finish.
#
#     export TASKS=8 INPUT=data.jsonl TOKENIZER=tokenizer DATASET=dataset
#     jobid=$(sbatch --parsable --array=0-$((TASKS - 1)) slurm_dataset.sh)
#     sbatch --dependency=afterany:$jobid slurm_dataset.sh --finish
#
# TASKS is N, the number of shares, set by you: Slurm's SLURM_ARRAY_TASK_COUNT counts the
# tasks of one submission, so a rerun of one task would read 1 there.
# To rerun a task that failed (or a node that was lost): `sbatch --array=3 slurm_dataset.sh`
# with the same TASKS and environment, then submit the finish again. A task run twice at once
# (a requeue while the first still runs) is safe: each works apart, the last to end counts.
# The finish waits with `afterany`, not `afterok`: once any task has failed, an afterok job
# stays pending for ever, even after a successful rerun. tokentype checks every share itself:
# the finish names each missing or mismatched task (exit 1) and builds nothing until all are
# right, and two finishes at once are refused, so afterany loses nothing.
#
# INPUT, TOKENIZER, DATASET, TASKS and OPTIONS come from the environment, which sbatch passes
# on unless told otherwise. Under `--export=NONE` (or a site that makes it the default), name
# them: `sbatch --export=TASKS=8,INPUT=data.jsonl,DATASET=dataset ...`. Every task and the
# finish must see the same values, on a filesystem they share.
# OPTIONS is read as shell words, so a value with spaces is quoted inside it:
#     OPTIONS='--chat-template "my template.jinja" --train-files 32'
#SBATCH --job-name=tokentype-dataset
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
set -euo pipefail
INPUT="${INPUT:-data.jsonl}"
TOKENIZER="${TOKENIZER:-tokenizer}"
DATASET="${DATASET:-dataset}"
OPTIONS="${OPTIONS:---max-seq-length 2048 --packing greedy::truncate_right --train-files 32 --dev-ratio 0.05 --shuffle --seed 0}"
# xargs splits on blanks and honours quotes, and runs nothing: the words of OPTIONS, one a line.
mapfile -t options < <(xargs -r printf '%s\n' <<< "$OPTIONS")
build=(tokentype tokenize "$INPUT" --tokenizer "$TOKENIZER" --dataset "$DATASET" "${options[@]}")

if [ "${1:-}" = "--finish" ]; then
    "${build[@]}" --finish --overwrite
    exec tokentype validate "$DATASET"
fi
if [ -z "${TASKS:-}" ]; then
    echo "slurm_dataset.sh: set TASKS to the number of shares (the N of --array=0-N-1)" >&2
    exit 2
fi
task="${SLURM_ARRAY_TASK_ID:?not an array job: submit with sbatch --array=0-$((TASKS - 1))}"
"${build[@]}" --task "$task/$TASKS" --workers "${SLURM_CPUS_PER_TASK:-1}"
echo "slurm_dataset.sh: task $task/$TASKS of $DATASET built (job ${SLURM_JOB_ID:-?})"
