"""posekit: Simple Baselines (PoseResNet), LPN, HRNet and SimpleNet pose estimation in Paddle 3.

Subpackages and modules: ``config`` (yaml experiments), ``models`` (the networks),
``checkpoint`` (reading, converting and strictly loading weights), ``complexity`` (parameters
and MACs), ``transforms`` and ``heatmap`` (the numpy codec shared by every entry point),
``data.descriptors`` (one descriptor per dataset: joints, flip pairs, metric), ``inference`` (running a model on prepared batches).
"""
__version__ = '0.1.0'
