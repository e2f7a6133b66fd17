"""Bottom-up (SimplePose) pre- and post-processing: the skeleton and channel layout
(:mod:`.layout`), the ground-truth encoder, the whole-image input spec and the grouping decoder."""
