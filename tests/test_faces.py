"""The face detector behind --protect faces: scikit-image's bundled LBP cascade, nothing downloaded."""

import numpy as np
from PIL import Image
from skimage import data

from pisasr.regions.faces import detect_faces, face_mask

# The astronaut's face in skimage.data.astronaut() (512 x 512): rows about 60-170, columns about 170-290.
FACE = (slice(60, 170), slice(170, 290))


def _overlap(box, rows: slice, cols: slice) -> float:
    """Intersection over the box's own area."""
    dy = max(0, min(box.top + box.height, rows.stop) - max(box.top, rows.start))
    dx = max(0, min(box.left + box.width, cols.stop) - max(box.left, cols.start))
    return dy * dx / (box.height * box.width)


def test_finds_the_astronauts_face():
    boxes = detect_faces(data.astronaut())
    assert any(_overlap(box, *FACE) > 0.8 for box in boxes)
    mask = face_mask(data.astronaut())
    assert mask.shape == (512, 512) and mask[FACE].mean() > 0.9


def test_finds_nothing_in_photos_without_faces():
    for photo in (data.coffee(), data.chelsea()):  # a cup of coffee, a cat
        assert detect_faces(photo) == []
        assert not face_mask(photo).any()


def test_large_images_are_searched_downscaled_and_boxes_scaled_back():
    big = np.asarray(Image.fromarray(data.astronaut()).resize((1536, 1536), Image.Resampling.BICUBIC))
    boxes = detect_faces(big)
    assert any(_overlap(box, slice(180, 510), slice(510, 870)) > 0.8 for box in boxes)
