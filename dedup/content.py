"""Content region: where a product photo sits inside a larger frame (a banner, a screenshot, a
padded canvas), so that it can be embedded on its own.

A copy pasted into a frame with text around it is far from its original by the whole image's
embedding (the frame, the text and the squeeze to a square are most of what the model sees), and
so never among the original's nearest neighbours. :func:`content_box` finds the pasted photo on a
small copy of the image (``embed.region_side`` px on the longer side), cheaply:

1. background: pixels within ``_TOLERANCE`` of the colour at either end of their row or of their
   column (a uniform fill, a vertical or horizontal gradient, the frame of a screenshot);
2. the rest, closed by 3x3, in 8-connected components; those whose box covers at least 1% of the
   canvas are the blocks;
3. text is left out: a block longer than 2.5 times its height (or the other way) is a line of
   text, and one whose mean absolute Laplacian is over ``_TEXT_LAPLACIAN`` is glyphs;
4. the largest remaining block is the content region when its box covers at most
   ``embed.region_max_share`` of the canvas and it looks pasted: a filled rectangle (at least
   ``embed.region_min_fill`` of its box is foreground) or with other blocks (text, buttons, a
   template; down to a single word, ``_MIN_PIECE`` of the canvas) covering at least
   ``embed.region_min_outside`` of the canvas.

An ordinary product photo (one garment on a plain background) is one block of irregular shape
with nothing around it, and gets no region: on the shared catalog photos about 5% get one
(docs/BENCHMARKS.md, issue 14 phases 3 and 17).

>>> import numpy as np
>>> from dedup.settings import default_table
>>> frame = np.full((300, 500, 3), 250, np.uint8)
>>> rng = np.random.default_rng(0)
>>> frame[40:200, 60:220] = rng.integers(0, 255, (160, 160, 3))  # the pasted photo
>>> frame[230:250, 300:460] = 20  # a text bar
>>> box = content_box(frame, default_table("embed"))  # found on a 96 px copy: within a few px
>>> all(abs(a - b) <= 6 for a, b in zip(box, (60, 40, 220, 200)))
True
>>> content_box(np.full((224, 224, 3), 255, np.uint8), default_table("embed")) is None  # nothing in it
True
"""

from __future__ import annotations

import cv2
import numpy as np

from dedup.settings import EmbedSettings

_TOLERANCE = 16  # colour distance (max over channels, 0-255) to the row's or column's end within the frame
_MIN_BLOCK = 0.01  # a block's box covers at least this share of the canvas
_MIN_PIECE = 0.001  # ... and a piece around it (a word, a button), at least this share
_MAX_ASPECT = 2.5  # a block longer than this (either way) is a line of text
_TEXT_LAPLACIAN = 100.0  # mean |Laplacian| of grey 0-255 at the working size above which a block is glyphs
_MIN_SIDE = 16  # px: a smaller region is not embedded
_SQUARE_FROM = 2.0  # a region this many times as long as it is wide is embedded centred on a square

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels (x1, y1 exclusive)
REGION_INPUT_VERSION = 2
"""What a region's embedding is computed on (:func:`square_region`; 1: the crop, squashed): a
previous run's region embeddings of another version are computed again (``dedup/incremental.py``)."""


def region_on(embed_settings: EmbedSettings) -> bool:
    """Whether the features stage looks for a content region (an embedder and ``embed.region``)."""
    return embed_settings.backend != "none" and embed_settings.region


def content_box(pixels: np.ndarray, settings: EmbedSettings) -> Box | None:
    """The box of the photo pasted into ``pixels`` (RGB, height x width x 3), or None when the
    image is not a frame around a smaller photo (module doc)."""
    h, w = pixels.shape[:2]
    scale = min(1.0, settings.region_side / max(h, w))
    small = pixels
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_AREA)
    found = _largest_block(small, settings)
    if found is None:
        return None
    x, y, bw, bh = found
    box = (int(x / scale), int(y / scale), min(w, int((x + bw) / scale)), min(h, int((y + bh) / scale)))
    if box[2] - box[0] < _MIN_SIDE or box[3] - box[1] < _MIN_SIDE:
        return None
    return box


def _largest_block(small: np.ndarray, settings: EmbedSettings) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the content block on the working-size image, or None (module doc)."""
    colours = small.astype(np.int16)
    height, width = colours.shape[:2]
    background = np.zeros((height, width), bool)
    for edge in (colours[:, :1], colours[:, -1:], colours[:1, :], colours[-1:, :]):
        d = np.abs(colours - edge)  # the max over channels, pairwise: numpy's reduce over 3 is 5x slower
        background |= np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) <= _TOLERANCE
    foreground = cv2.morphologyEx((~background).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if n <= 1:
        return None
    canvas = float(width * height)
    x, y, bw, bh, area = (stats[1:, i].astype(np.int64) for i in range(5))
    blocks = np.flatnonzero(bw * bh >= _MIN_BLOCK * canvas)
    if len(blocks) == 0:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY).astype(np.float32)
    laplacian = np.bincount(labels.ravel(), np.abs(cv2.Laplacian(grey, cv2.CV_32F)).ravel(), minlength=n)[1:]
    aspect = bw / np.maximum(bh, 1)
    photo_like = blocks[
        (aspect[blocks] <= _MAX_ASPECT)
        & (aspect[blocks] >= 1 / _MAX_ASPECT)
        & (laplacian[blocks] / np.maximum(area[blocks], 1) <= _TEXT_LAPLACIAN)
    ]
    if len(photo_like) == 0:
        return None
    best = photo_like[np.argmax(bw[photo_like] * bh[photo_like])]
    share = bw[best] * bh[best] / canvas
    fill = area[best] / max(1, bw[best] * bh[best])
    pieces = np.flatnonzero(bw * bh >= _MIN_PIECE * canvas)  # the blocks and the words around them
    outside = (area[pieces].sum() - area[best]) / canvas
    pasted = fill >= settings.region_min_fill or outside >= settings.region_min_outside
    if share > settings.region_max_share or not pasted:
        return None
    return int(x[best]), int(y[best]), int(bw[best]), int(bh[best])


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """The pixels inside ``box``."""
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(pixels[y0:y1, x0:x1])


def square_region(pixels: np.ndarray, box: Box) -> np.ndarray:
    """What a region's embedding is computed on: the pixels inside ``box``, and where the box is
    ``_SQUARE_FROM`` times as wide as high or more (or the other way), those centred on a square of
    the median colour of their outermost pixels. The model squashes its input to a square, and
    where a pasted photo's white merged with a light canvas the region is cut tight around the
    product (sunglasses, a belt), which squashed is far from the original photo, the product
    centred on its ground. A region closer to square is left as it is: there the squeeze is mild,
    and a frame's colour around a photo moves it further from its original (issue 14 phase 18).

    >>> wide = np.zeros((20, 60, 3), np.uint8); wide[:, :, 0] = 200
    >>> square = square_region(np.pad(wide, ((5, 5), (0, 0), (0, 0))), (0, 5, 60, 25))
    >>> square.shape, square[0, 0].tolist(), square[30, 30].tolist()
    ((60, 60, 3), [200, 0, 0], [200, 0, 0])
    >>> square_region(np.pad(wide, ((5, 5), (0, 0), (0, 0))), (0, 0, 45, 30)).shape  # 1.5 to 1: as it is
    (30, 45, 3)
    """
    region = crop(pixels, box)
    height, width = region.shape[:2]
    if max(height, width) < _SQUARE_FROM * min(height, width):
        return region
    return centred(region)


def centred(region: np.ndarray) -> np.ndarray:
    """``region`` centred on a square of its outermost pixels' median colour."""
    height, width = region.shape[:2]
    ring = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    side = max(height, width)
    square = np.empty((side, side, 3), np.uint8)
    square[:] = np.median(ring, axis=0).astype(np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = region
    return square
