"""Deterministic synthetic pose data in the MPII and COCO on-disk formats.

Cartoon people are drawn from one 2D kinematic model (torso polygon, head, neck, tapered limbs
with round ends, hands and shoes) over cluttered backgrounds, with occluders and several people
per image. The exact joints come from the model, so one scene gives both the 16 MPII joints and
the 17 COCO joints. No mark is drawn at any joint: a network has to find the joints from the
body shape.

Left and right are told apart the way real photos tell them apart: everybody faces the camera
(a face, a V-neck and buttons on the front), so a person's right side is on the image's left.
Nothing is colour-coded by side and the pose distribution is left/right symmetric, so a mirrored
image with swapped labels is as likely as the original (training flips and flip test rely on it).

Writers (same seed -> byte-identical files with the same OpenCV build; every image has its own
random stream, seeded by ``(seed, split, index)``, so MPII and COCO sets of one seed show the
same scenes):

* MPII (REFERENCE_SPEC 1.1): ``images/<9 digits>.jpg``, ``annot/{train,valid}.json`` (1-based
  pixels), ``annot/gt_valid.mat`` for :func:`posekit.evaluation.pckh.evaluate_pckh`.
* COCO (REFERENCE_SPEC 1.2): ``images/<set>/<12 digits>.jpg``,
  ``annotations/person_keypoints_<set>.json`` and ``annotations/person_detection_<set>.json``
  (jittered ground-truth boxes plus a few low-score false positives).

Both write ``synthetic.json`` (generator version and parameters) last; :func:`ensure_synthetic`
reuses a folder only when that manifest matches, and builds a new one in a temporary sibling
folder that is renamed into place, so an interrupted run never leaves a set that looks complete.

Coordinates returned by :func:`render_scene` are 0-based image pixels with pixel centres at
integers (the convention of :mod:`posekit.codec.transforms`); they are rounded to 0.01 px so that the
json files, the .mat file and the returned arrays hold the same numbers.

Modules, in import order: :mod:`.figure` (body model, shapes, drawing one person), :mod:`.scene`
(background, occluders, :func:`render_scene`), :mod:`.writers` (:func:`generate_mpii`,
:func:`generate_coco`, the manifest) and :mod:`.cache` (:func:`ensure_synthetic`).
"""
from posekit.data.synthetic.scene import (COORD_DECIMALS, DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PEOPLE,
                                          render_scene)
from posekit.data.synthetic.writers import (DEFAULT_COCO_SETS, FORMATS, GENERATOR_VERSION,
                                            JPEG_QUALITY, MANIFEST_NAME, MPII_MIN_JOINTS_IN_IMAGE,
                                            MPII_SCALE_MARGIN, SyntheticError, generate_coco,
                                            generate_mpii)
from posekit.data.synthetic.cache import ensure_synthetic, read_manifest

__all__ = ['SyntheticError', 'render_scene', 'generate_mpii', 'generate_coco', 'ensure_synthetic',
           'read_manifest', 'DEFAULT_IMAGE_SIZE', 'DEFAULT_MAX_PEOPLE', 'FORMATS',
           'GENERATOR_VERSION', 'MANIFEST_NAME']
