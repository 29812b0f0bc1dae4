"""mmseg segmentors whose decode head takes its channel numbers from the MicroNet backbone."""
from mmseg.models.segmentors import EncoderDecoder

from .auto_channels import with_auto_channels

#: ``EncoderDecoder`` with ``decode_head.in_channels='auto'`` filled from the backbone config
MicroNetEncoderDecoder = with_auto_channels(EncoderDecoder, 'decode_head')
