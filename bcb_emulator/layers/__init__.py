"""Custom Keras layers of the BCB emulator, one public class per module.

All layers are channels-last: fields are `(…, H, W, C)` with latitude (south → north) on
axis -3 and longitude (−180 → 180) on axis -2. See ``docs/emulator.md``.
"""

from bcb_emulator.layers.conv_lstm_cell import ConvLSTMCell
from bcb_emulator.layers.conv_lstm_stack import ConvLSTMStack
from bcb_emulator.layers.readout import Readout
from bcb_emulator.layers.sft_fusion import SFTFusion
from bcb_emulator.layers.spatial_encoder import SpatialEncoder
from bcb_emulator.layers.spherical_crop import SphericalCrop
from bcb_emulator.layers.spherical_padding import SphericalPadding

__all__ = [
    "ConvLSTMCell",
    "ConvLSTMStack",
    "Readout",
    "SFTFusion",
    "SpatialEncoder",
    "SphericalCrop",
    "SphericalPadding",
]
