"""mmdet detectors whose FPN ``in_channels='auto'`` comes from the MicroNet backbone."""
from mmdet.models.detectors import FasterRCNN, RetinaNet

from .auto_channels import with_auto_channels

MicroNetRetinaNet = with_auto_channels(RetinaNet, 'neck')
MicroNetFasterRCNN = with_auto_channels(FasterRCNN, 'neck')
