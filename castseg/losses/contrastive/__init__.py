"""Instance-aware pixel-wise contrastive loss L_pxl: fused ỹ, sampler, NT-Xent, monitors."""

from castseg.losses.contrastive.fused import fused_pseudo_probabilities
from castseg.losses.contrastive.memory_bank import EmbeddingMemoryBank
from castseg.losses.contrastive.monitors import instance_id_map, sampling_monitors
from castseg.losses.contrastive.nt_xent import pixel_contrastive_loss
from castseg.losses.contrastive.sampler import sample_negatives

__all__ = [
    "EmbeddingMemoryBank",
    "fused_pseudo_probabilities",
    "instance_id_map",
    "pixel_contrastive_loss",
    "sample_negatives",
    "sampling_monitors",
]
