"""SAM2's input size: read from its config, or changed by rescaling its feature-map sizes.

SAM2 takes square images of `prompt_encoder_config.image_size` (1024 for the released models)
and its config records the matching feature-map sizes (stride 4, 8 and 16). The Hiera encoder
interpolates its position embedding, so the same weights run at another size once those
entries are rescaled.
"""

from __future__ import annotations

from transformers import Sam2Config


def sam2_input_size(config: Sam2Config) -> int:
    """The square input size SAM2 expects."""
    size = config.prompt_encoder_config.image_size
    return int(size if isinstance(size, int) else size[0])


def sam2_config_for_size(config: Sam2Config, size: int) -> Sam2Config:
    """A copy of `config` for size × size inputs (`config` itself when the size is its own).

    Raises ValueError when `size` does not divide into the encoder's strides and its first
    attention window, naming the multiple it must be.
    """
    current = sam2_input_size(config)
    if size == current:
        return config
    vision = config.vision_config
    backbone = vision.backbone_config
    strides = [current // h for h, _ in vision.backbone_feature_sizes]
    # The windowed position embedding tiles the stride-4 grid with the first window size.
    multiple = max(max(strides), backbone.patch_stride[0] * backbone.window_size_per_stage[0])
    if size < multiple or size % multiple:
        raise ValueError(
            f"the segmenter input size must be a positive multiple of {multiple}, got {size}"
        )
    settings = config.to_dict()
    settings["vision_config"]["backbone_config"]["image_size"] = [size, size]
    settings["vision_config"]["backbone_feature_sizes"] = [[size // s, size // s] for s in strides]
    settings["prompt_encoder_config"]["image_size"] = size
    return Sam2Config.from_dict(settings)
