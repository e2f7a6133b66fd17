"""The bottom-up (SimplePose) skeleton and channel layout: the one place for these constants
(SIMPLEPOSE_SPEC 2).

Keypoints are in the reference's "ours-18" order (COCO's 17 plus a neck). The network predicts
50 channels: 30 limb ("body part") maps first, then the 18 keypoint maps, then the person mask
(``mask_all`` eroded) and the maximum over the keypoint maps. Limb ``k`` joins
``LIMBS[k][0] -> LIMBS[k][1]``; grouping walks the limbs in this order, so the order matters.
"""

PARTS = ('nose', 'neck', 'Rsho', 'Relb', 'Rwri', 'Lsho', 'Lelb', 'Lwri', 'Rhip', 'Rkne',
         'Rank', 'Lhip', 'Lkne', 'Lank', 'Reye', 'Leye', 'Rear', 'Lear')
NUM_PARTS = len(PARTS)  # 18

NECK = 1
LEFT_PARTS = (5, 6, 7, 11, 12, 13, 15, 17)
RIGHT_PARTS = (2, 3, 4, 8, 9, 10, 14, 16)

LIMBS = (
    (1, 0), (1, 14), (1, 15), (1, 16), (1, 17),          # 0-4 neck to nose, eyes, ears
    (0, 14), (0, 15), (14, 16), (15, 17),                 # 5-8 face
    (1, 2), (2, 3), (3, 4),                               # 9-11 right arm
    (1, 5), (5, 6), (6, 7),                               # 12-14 left arm
    (1, 8), (8, 9), (9, 10),                              # 15-17 right leg
    (1, 11), (11, 12), (12, 13),                          # 18-20 left leg
    (0, 2), (0, 5), (2, 8), (8, 12), (5, 11), (11, 9),    # 21-26 nose-shoulders, torso, crossings
    (16, 2), (17, 5), (8, 11),                            # 27-29 ears-shoulders, hips
)
NUM_LIMBS = len(LIMBS)  # 30

PAF_START = 0
HEAT_START = NUM_LIMBS                  # 30: keypoint maps
BKG_START = HEAT_START + NUM_PARTS      # 48: person mask, then 49: max over keypoint maps
NUM_CHANNELS = BKG_START + 2            # 50

# Horizontal flip: channel permutations of the 20 "heat" channels (30..49) and the 30 limbs.
FLIP_HEAT_ORDER = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18, 19)
FLIP_PAF_ORDER = (0, 2, 1, 4, 3, 6, 5, 8, 7, 12, 13, 14, 9, 10, 11, 18, 19, 20, 15, 16, 17,
                  22, 21, 25, 26, 23, 24, 28, 27, 29)

# Ours-18 part p -> COCO-17 keypoint index (the neck has none), for results.
OURS_TO_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
# COCO-17 keypoint k -> ours-18 part (the inverse of OURS_TO_COCO).
COCO_TO_OURS = tuple(OURS_TO_COCO.index(k) for k in range(17))


def _check():
    flip_parts = FLIP_HEAT_ORDER[:NUM_PARTS]
    pairs = dict(zip(LEFT_PARTS, RIGHT_PARTS))
    pairs.update(zip(RIGHT_PARTS, LEFT_PARTS))
    assert all(flip_parts[p] == pairs.get(p, p) for p in range(NUM_PARTS))
    mirrored = [tuple(pairs.get(p, p) for p in limb) for limb in LIMBS]
    assert all(LIMBS[FLIP_PAF_ORDER[k]] in (mirrored[k], mirrored[k][::-1])
               for k in range(NUM_LIMBS))


_check()
