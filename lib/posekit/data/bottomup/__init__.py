"""Bottom-up (SimplePose) training data from COCO json + images (SIMPLEPOSE_SPEC 4):
annotations -> masks and main-person instances (:mod:`.annotations`), augmentation
(:mod:`.augment`), the dataset (:mod:`.dataset`). Framework-free numpy; the targets come from
:class:`posekit.codec.bottomup.encode.BottomUpEncoder`."""
from posekit.data.bottomup.annotations import (coco_to_ours, image_instances, make_masks,
                                               remap_visibility, select_main_persons)
from posekit.data.bottomup.augment import AugmentSelection, augment_sample, distort_color
from posekit.data.bottomup.dataset import BottomUpCOCODataset, load_coco_images

__all__ = ['coco_to_ours', 'image_instances', 'make_masks', 'remap_visibility',
           'select_main_persons', 'AugmentSelection', 'augment_sample', 'distort_color',
           'BottomUpCOCODataset', 'load_coco_images']
