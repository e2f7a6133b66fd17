"""posekit.io: atomic writes, the one image reader (one EXIF policy), image listing, json."""
import json
import os
import stat
import struct

import cv2
import numpy as np
import pytest
import yaml

from posekit import io as pio
from posekit.errors import PosekitInputError


def _only_file(folder, name):
    """The folder holds ``name`` and nothing else (no temporary file left behind)."""
    assert sorted(os.listdir(folder)) == [name]


# --------------------------------------------------------------------------------------------
# atomic writes

@pytest.mark.parametrize('interrupt', [RuntimeError, KeyboardInterrupt])
def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path, interrupt):
    target = tmp_path / 'weights.pdparams'
    target.write_bytes(b'old weights')
    with pytest.raises(interrupt):
        with pio.atomic_path(str(target)) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path)  # same folder: the rename is atomic
            assert tmp.endswith('.pdparams')  # writers that pick a format by extension
            with open(tmp, 'wb') as f:
                f.write(b'half of the new')
            raise interrupt('writer died')
    assert target.read_bytes() == b'old weights'
    _only_file(tmp_path, 'weights.pdparams')


def test_atomic_path_replaces_and_creates_folders(tmp_path):
    target = tmp_path / 'a' / 'b' / 'out.bin'
    with pio.atomic_path(target) as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'new')
    assert target.read_bytes() == b'new'
    _only_file(target.parent, 'out.bin')
    # the file gets the permissions a plain open() would give it, not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask


def test_a_writer_that_raises_on_dump_leaves_the_old_json(tmp_path):
    path = str(tmp_path / 'results.json')
    pio.write_json(path, {'AP': 0.5})
    with pytest.raises(TypeError):
        pio.write_json(path, {'AP': 0.7, 'bad': object()})  # json fails half-way through
    with open(path) as f:
        assert json.load(f) == {'AP': 0.5}
    _only_file(tmp_path, 'results.json')


def test_writers_round_trip(tmp_path):
    js = pio.write_json(str(tmp_path / 'x.json'), {'b': [1, 2], 'a': 1}, separators=(',', ':'))
    with open(js, encoding='utf-8') as f:
        assert f.read() == '{"b":[1,2],"a":1}\n'
    pio.write_json(str(tmp_path / 'y.json'), {'a': 1}, indent=2)
    assert (tmp_path / 'y.json').read_text() == '{\n  "a": 1\n}\n'

    ym = pio.write_yaml(str(tmp_path / 'c.yaml'), {'Z': 1, 'A': [1, 2]})
    with open(ym, encoding='utf-8') as f:
        text = f.read()
    assert text.index('Z') < text.index('A')  # key order kept
    assert yaml.safe_load(text) == {'Z': 1, 'A': [1, 2]}

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    npz = pio.write_npz(str(tmp_path / 'p.npz'), preds=a)
    with np.load(npz) as z:
        np.testing.assert_array_equal(z['preds'], a)

    from scipy.io import loadmat
    mat = pio.write_mat(str(tmp_path / 'pred.mat'), {'preds': a.astype(np.float64)})
    np.testing.assert_array_equal(loadmat(mat)['preds'], a)

    pio.write_bytes(str(tmp_path / 'raw'), b'\x00\x01')
    assert (tmp_path / 'raw').read_bytes() == b'\x00\x01'
    assert sorted(os.listdir(tmp_path)) == ['c.yaml', 'p.npz', 'pred.mat', 'raw', 'x.json',
                                            'y.json']


# --------------------------------------------------------------------------------------------
# the image reader and its EXIF policy

def _jpeg_with_orientation(image, orientation):
    """JPEG bytes of ``image`` with an EXIF APP1 segment holding only the Orientation tag."""
    ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    jpeg = buf.tobytes()
    tiff = (b'MM\x00\x2a' + struct.pack('>I', 8)            # big-endian TIFF, IFD at 8
            + struct.pack('>H', 1)                           # one entry
            + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0)  # Orientation, SHORT
            + struct.pack('>I', 0))                          # no next IFD
    payload = b'Exif\x00\x00' + tiff
    app1 = b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def _photo():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 64, 3), np.uint8)
    image[:20, :32] = (0, 0, 220)  # a red top-left corner
    return image + rng.integers(0, 20, image.shape, dtype=np.uint8)


def _tagged_photo(tmp_path, name='phone.jpg'):
    path = tmp_path / name
    path.write_bytes(_jpeg_with_orientation(_photo(), 6))  # 6: "rotate 90 degrees clockwise"
    return str(path)


def test_read_image_ignores_exif_orientation(tmp_path):
    path = _tagged_photo(tmp_path)
    # the tag is real: OpenCV's default reading turns the picture upright
    assert cv2.imread(path, cv2.IMREAD_COLOR).shape == (64, 40, 3)
    image = pio.read_image(path)
    assert image.shape == (40, 64, 3) and image.dtype == np.uint8
    assert image[5, 5, 2] > 180 and image[35, 60, 2] < 60  # red stays top-left: stored pixels
    with open(path, 'rb') as f:
        stored = cv2.imdecode(np.frombuffer(f.read(), np.uint8),
                              cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(image, stored)


def test_every_reader_follows_the_policy(tmp_path):
    """Datasets, inference and int8 calibration see a tagged photo as its stored pixels."""
    from posekit.config import load_config
    from posekit.data import read_image as dataset_read_image
    from posekit.export.quantize import load_calibration_inputs
    from posekit.inference.deploy_config import DeployConfig
    assert dataset_read_image is pio.read_image
    tagged = _tagged_photo(tmp_path)
    plain = str(tmp_path / 'plain.jpg')  # the same JPEG stream without the EXIF segment
    assert cv2.imwrite(plain, _photo(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    dc = DeployConfig.from_cfg(load_config(None))
    inputs, used, skipped = load_calibration_inputs([tagged, plain], dc)
    assert used == [tagged, plain] and skipped == []
    np.testing.assert_array_equal(inputs[0], inputs[1])


def test_read_image_grey_and_png(tmp_path):
    grey = np.tile(np.arange(32, dtype=np.uint8)[None, :] * 8, (16, 1))
    path = str(tmp_path / 'g.png')
    assert cv2.imwrite(path, grey)
    image = pio.read_image(path)
    assert image.shape == (16, 32, 3)
    np.testing.assert_array_equal(image[..., 0], grey)


# --------------------------------------------------------------------------------------------
# listing and json; every error is one line and a PosekitInputError (hence a ValueError)

def _one_line_input_error(excinfo, *words):
    e = excinfo.value
    assert isinstance(e, PosekitInputError) and isinstance(e, ValueError)
    assert '\n' not in str(e)
    for w in words:
        assert w in str(e)


def test_image_errors_are_one_line(tmp_path):
    with pytest.raises(pio.ImageReadError) as ei:
        pio.read_image(str(tmp_path / 'nope.jpg'))
    _one_line_input_error(ei, 'not found', 'nope.jpg')
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'not a jpeg\nat all')
    with pytest.raises(pio.ImageReadError) as ei:
        pio.read_image(str(bad))
    _one_line_input_error(ei, 'cannot read image', 'bad.jpg')


def test_list_images(tmp_path):
    for name in ('b.PNG', 'a.jpg', 'c.txt', 'd.jpeg'):
        (tmp_path / name).write_bytes(b'x')
    os.makedirs(tmp_path / 'sub.jpg')  # a folder named like an image is not one
    assert [os.path.basename(p) for p in pio.list_images(str(tmp_path))] == \
        ['a.jpg', 'b.PNG', 'd.jpeg']
    with pytest.raises(pio.InputFileError) as ei:
        pio.list_images(str(tmp_path / 'missing'), what='calibration folder')
    _one_line_input_error(ei, 'calibration folder not found', 'missing')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(pio.InputFileError) as ei:
        pio.list_images(str(empty))
    _one_line_input_error(ei, 'no images', '.jpg', 'empty')


def test_read_json(tmp_path):
    path = tmp_path / 'ann.json'
    path.write_text('{"images": [1, 2]}')
    assert pio.read_json(str(path)) == {'images': [1, 2]}
    with pytest.raises(pio.InputFileError) as ei:
        pio.read_json(str(tmp_path / 'gone.json'), what='COCO annotation file')
    _one_line_input_error(ei, 'COCO annotation file not found', 'gone.json')
    path.write_text('{"images": [\n1,\n')
    with pytest.raises(pio.InputFileError) as ei:
        pio.read_json(str(path), what='annotation file')
    _one_line_input_error(ei, 'cannot parse annotation file', 'ann.json')
