#!/usr/bin/env bash
# Compress one large file with a Slurm job array: task K of N compresses part K/N of the input, and a
# job that starts when all of them have succeeded joins the pieces into the archive one
# `llmzip c FILE` would have written, byte for byte (FORMAT.md, "Pieces").
#
#   sbatch --array=1-16 examples/slurm-array.sh c corpus.txt       # compress, then join (submitted below)
#   sbatch --array=1-16 examples/slurm-array.sh d corpus.txt.lz    # decompress, then concatenate
#
# Every task must run the same llmzip with the same model and settings (the header records them and the
# join refuses pieces that differ). Put the model in a shared cache first: `llmzip models fetch` with
# LLMZIP_CACHE_DIR on a shared file system, so the tasks do not fetch it N times.
#SBATCH --job-name=llmzip
#SBATCH --cpus-per-task=4
#SBATCH --output=llmzip-%A_%a.log
set -euo pipefail

mode=${1:?usage: $0 c FILE | d FILE.lz}
file=${2:?usage: $0 c FILE | d FILE.lz}
dir=${LLMZIP_PIECES:-$file.pieces}
n=${SLURM_ARRAY_TASK_COUNT:?run with sbatch --array=1-N}
k=${SLURM_ARRAY_TASK_ID:?run with sbatch --array=1-N}
threads=${SLURM_CPUS_PER_TASK:-1}
width=${#n}
name=$(printf "%s/part%0${width}d" "$dir" "$k")
mkdir -p "$dir"

case "$mode" in
c)
    # Part K of N of the input's chunks (cut where one `llmzip c` cuts them), written atomically.
    llmzip c --threads "$threads" --part "$k/$n" -f -o "$name.lz" "$file"
    # The first task submits the join, to start once every task of this array has succeeded.
    if [ "$k" = 1 ]; then
        sbatch --dependency="afterok:$SLURM_ARRAY_JOB_ID" --job-name=llmzip-join --wrap \
            "llmzip join -o '$file.lz' '$dir'/part*.lz && llmzip l '$file.lz'"
    fi
    ;;
d)
    # Part K of N of the archive's chunks, cut without the model, decoded alone.
    llmzip split --part "$k/$n" -c "$file" | llmzip d --threads "$threads" -c > "$name.tmp"
    mv "$name.tmp" "$name.out"
    if [ "$k" = 1 ]; then
        out=${file%.lz}
        sbatch --dependency="afterok:$SLURM_ARRAY_JOB_ID" --job-name=llmzip-cat --wrap \
            "cat '$dir'/part*.out > '$out.tmp' && mv '$out.tmp' '$out'"
    fi
    ;;
*)
    echo "usage: $0 c FILE | d FILE.lz" >&2
    exit 1
    ;;
esac
