# Kaldi's cmd.sh convention: how jobs are run. Local processes by default;
# on a slurm cluster set e.g. decode_cmd="srun --cpus-per-task=1".
export train_cmd=""
export decode_cmd=""
