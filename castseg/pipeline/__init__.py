"""The CAST pipeline over the training layer: the stage table and its stages (teacher
adaptation, pseudo-labelling, knowledge transfer, refinement), the run state and the shared
stage store that resume them, the fingerprints that key them, the pseudo-label cache and its
quality, the experiment's data and `CastPipeline`, which runs one config end to end."""
