"""The choices of the emulator's configurable parts, in one place.

`bcb_emulator.config` validates a `ModelConfig` against them without importing Keras, and the
layers of `bcb_emulator.layers` validate their arguments against the same tuples.
"""

#: Pole treatment of the spherical halo (`layers.SphericalPadding`).
POLE_MODES = ("reflect", "fold")
#: Peephole connections of `layers.ConvLSTMCell`.
PEEPHOLES = ("none", "channel", "spatial")
#: How `layers.ConvLSTMCell` applies its gate kernel.
GATE_CONVS = ("auto", "fused", "split", "winograd")
#: How `layers.SpatialEncoder` applies its k×k kernels.
ENCODER_CONVS = ("auto", "direct", "winograd")
#: Kernel sides the Winograd convolutions support (`layers.winograd`).
WINOGRAD_KERNELS = (3, 5)
#: Which stream conditions which in the fusion (``"none"``: concatenation, the ablation).
FUSIONS = ("3d_conditions_2d", "2d_conditions_3d", "none")
