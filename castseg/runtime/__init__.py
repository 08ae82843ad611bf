"""How a model runs in this process, below training and deploy: compute settings (threads,
matmul and Lightning precision), the ranks of a torchrun or SLURM launch, whole-image inference
and the mask AP of a model on a COCO dataset."""
