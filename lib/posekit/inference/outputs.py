"""What a prediction run writes: the drawn picture and the keypoints json of each image, the
annotated video and its one json with a record per frame.

Names follow the source: ``<output>/<stem>_pose.jpg``, ``<stem>_keypoints.json``,
``<stem>_pose.mp4``. The json holds the run's description (image or video, model, runtime,
options, where the boxes came from) and :meth:`posekit.inference.predictor.PoseResult.to_dict`:
per person the box (x, y, w, h), its score, the mean keypoint confidence and the keypoints as
``{name, x, y, score}`` in image pixels.
"""
import os

import cv2

from posekit.inference.visualize import draw_result
from posekit.io import atomic_path, write_json

__all__ = ['OUTPUT_SUFFIXES', 'output_path', 'save_prediction', 'VideoOutput']

OUTPUT_SUFFIXES = {'picture': '_pose.jpg', 'keypoints': '_keypoints.json', 'video': '_pose.mp4'}


def output_path(output_dir, source_path, what):
    """``<output_dir>/<stem of source_path><suffix>`` for ``what`` in :data:`OUTPUT_SUFFIXES`."""
    stem = os.path.splitext(os.path.basename(source_path))[0]
    return os.path.join(output_dir, stem + OUTPUT_SUFFIXES[what])


def save_prediction(output_dir, image_path, image_bgr, result, deploy_config, meta=None,
                    kpt_thr=0.3, draw_names=False):
    """Write the drawn picture and the keypoints json of one image; returns (jpg, json) paths."""
    jpg = output_path(output_dir, image_path, 'picture')
    js = output_path(output_dir, image_path, 'keypoints')
    drawn = draw_result(image_bgr, result, deploy_config, kpt_thr=kpt_thr, draw_names=draw_names)
    with atomic_path(jpg) as tmp:
        if not cv2.imwrite(tmp, drawn):
            raise OSError('cannot write %s' % jpg)
    data = dict(meta or {})
    data.update(result.to_dict())
    write_json(js, data, indent=1)
    return jpg, js


class VideoOutput:
    """The annotated copy of a video (mp4v, same fps and size) and its keypoints json.

    :meth:`add` takes each frame with its result (None: a frame without a person, kept as it
    is with an empty record); :meth:`close` finishes the video and writes the json: ``meta``,
    ``fps``, ``frame_size`` [W, H], ``joint_names`` and ``frames`` (per frame its index and
    persons, as in an image's json).
    """

    def __init__(self, output_dir, video_path, fps, frame_size, deploy_config, meta=None,
                 kpt_thr=0.3, draw_names=False):
        self.path = output_path(output_dir, video_path, 'video')
        self.json_path = output_path(output_dir, video_path, 'keypoints')
        self.fps = float(fps)
        self.frame_size = [int(v) for v in frame_size]
        self.deploy_config = deploy_config
        self.meta = dict(meta or {})
        self.kpt_thr = kpt_thr
        self.draw_names = draw_names
        self.frames = []
        os.makedirs(output_dir, exist_ok=True)
        self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*'mp4v'), self.fps,
                                      tuple(self.frame_size))
        if not self.writer.isOpened():
            raise OSError('cannot write video %s (mp4v codec unavailable?)' % self.path)

    def add(self, frame, result=None):
        index = len(self.frames)
        if result is None:
            drawn, record = frame, {'frame': index, 'persons': []}
        else:
            drawn = draw_result(frame, result, self.deploy_config, kpt_thr=self.kpt_thr,
                                draw_names=self.draw_names)
            record = dict(result.to_dict(), frame=index)
            record.pop('joint_names', None)  # once for the whole video
        self.frames.append(record)
        self.writer.write(drawn)

    def release(self):
        """Finish the video file (also after an error: what was written stays playable)."""
        self.writer.release()

    def close(self):
        """Finish the video and write the json; returns its path."""
        self.release()
        data = dict(self.meta, fps=self.fps, frame_size=self.frame_size,
                    joint_names=self.deploy_config.joint_names, frames=self.frames)
        return write_json(self.json_path, data, indent=1)
