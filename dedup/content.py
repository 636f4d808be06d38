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
   ``embed.region_min_outside`` of the canvas;
5. a photo shown in a slot of another aspect (a post in a screenshot) sits between two bars of one
   colour (a pillarbox or a letterbox). Where its white merged with the page, or it touches a bar,
   the slot is no block: two flat bars of one colour facing each other, with the page around them,
   mark it (:func:`_barred_slot`), and it is taken over the blocks it overlaps or is larger than.
   Bars inside the chosen region (of a slot, a border, a pad) are cut off at full size
   (:func:`between_bars`), so the region is the photo alone (issue 14 phase 19).

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

import itertools

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
_BAR_SOLID = 0.75  # a bar's flat part fills at least this share of its box
_BAR_FILL = 0.95  # a line (column or row) of a bar: at least this share of it is the bar's colour
_BAR_MIN = 0.1  # each bar is at least this share of the region's width (or height)
_BAR_INNER = 0.3  # ... and the photo between them at least this share
_BAR_SPAN = 0.6  # the bars run along at least this share of the region's height (or width; a header above)
_BAR_LONG = 2.0  # a bar is at least this many times as long as it is thick
_BAR_SHARED = 0.8  # two bars marking a slot share at least this share of the longer one's length
_BAR_GROUND = 0.7  # around a slot (beyond its bars, and beyond the photo's ends) at least this share is the page
_BAR_EDGE = 0.2  # the photo's edge next to a bar: a line with at most this share of the bar's colour

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels (x1, y1 exclusive)
REGION_INPUT_VERSION = 3
"""What a region's embedding is computed on (:func:`square_region`; 1: the crop, squashed; 2: the
region before bars were cut off): a previous run's region embeddings of another version are
computed again (``dedup/incremental.py``)."""


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
    margin = int(np.ceil(1 / scale))  # a working-size pixel: the bars' edges are found at full size
    around = (max(0, box[0] - margin), max(0, box[1] - margin), min(w, box[2] + margin), min(h, box[3] + margin))
    inner = between_bars(crop(pixels, around))
    if inner is not None:
        box = (around[0] + inner[0], around[1] + inner[1], around[0] + inner[2], around[1] + inner[3])
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
    slot = _barred_slot(np.ascontiguousarray(small), background)
    if len(photo_like) == 0 and slot is None:
        return None
    best = photo_like[np.argmax(bw[photo_like] * bh[photo_like])] if len(photo_like) else None
    if best is not None and (
        slot is None or (bw[best] * bh[best] > slot[2] * slot[3] and not _overlap(slot, stats[best + 1]))
    ):
        box = int(x[best]), int(y[best]), int(bw[best]), int(bh[best])
        fill = area[best] / max(1, bw[best] * bh[best])
        pieces = np.flatnonzero(bw * bh >= _MIN_PIECE * canvas)  # the blocks and the words around them
        outside = (area[pieces].sum() - area[best]) / canvas
        pasted = fill >= settings.region_min_fill or outside >= settings.region_min_outside
    else:
        box, pasted = slot, True  # a slot the bars mark, over a block in it or larger than any: pasted
    if box[2] * box[3] / canvas > settings.region_max_share or not pasted:
        return None
    return box


def _overlap(box: tuple[int, int, int, int], other: np.ndarray) -> bool:
    """Whether two (x, y, width, height) boxes overlap."""
    x, y, w, h = box
    ox, oy, ow, oh = (int(v) for v in other[:4])
    return x < ox + ow and ox < x + w and y < oy + oh and oy < y + h


def _barred_slot(small: np.ndarray, background: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the largest slot two bars mark (module doc, step 5), or None.

    A bar is a part of the image that is flat (each pixel's 3x3 neighbourhood within ``_TOLERANCE``),
    not the page's background, a filled rectangle at least ``_BAR_LONG`` times as long as it is thick
    and as large as a block (``_MIN_BLOCK`` of the canvas);
    flatness parts it from a photo or an avatar it touches. Two bars of one colour, side by side over
    about the same rows (or one above the other over about the same columns), with room for a photo
    between them and the page (the background) all around, mark the slot from the outer edge of one
    to that of the other, over the rows (columns) they share."""
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(small, kernel).astype(np.int16) - cv2.erode(small, kernel)
    flat = (spread.max(axis=2) <= _TOLERANCE) & ~background
    n, labels, stats, _ = cv2.connectedComponentsWithStats(flat.astype(np.uint8), connectivity=4)
    height, width = background.shape
    bars = []
    for label in range(1, n):
        bx, by, bw, bh, area = (int(v) for v in stats[label])
        big = bw * bh >= _MIN_BLOCK * background.size  # as a block: not a sliver of a blurred photo's shading
        if big and max(bw, bh) >= _BAR_LONG * min(bw, bh) and min(bw, bh) >= 2 and area >= _BAR_SOLID * bw * bh:
            colour = np.median(small[labels == label].astype(np.int16), axis=0)
            # a flat part ends a pixel short of its edge: grown back
            bars.append((max(0, bx - 1), max(0, by - 1), min(width, bx + bw + 1), min(height, by + bh + 1), colour))
    best: tuple[int, int, int, int] | None = None
    for a, b in itertools.combinations(bars, 2):
        if np.abs(a[4] - b[4]).max() > _TOLERANCE:
            continue
        for side_by_side in (True, False):
            along = 1 if side_by_side else 0  # the bars share rows (y: index 1) or columns (x: index 0)
            lo, hi = max(a[along], b[along]), min(a[along + 2], b[along + 2])
            length = max(a[along + 2] - a[along], b[along + 2] - b[along])
            first, second = sorted(((a[1 - along], a[3 - along]), (b[1 - along], b[3 - along])))
            gap, thickest = second[0] - first[1], max(first[1] - first[0], second[1] - second[0])
            long_thin = hi - lo >= _BAR_SHARED * length and hi - lo >= _BAR_LONG * thickest
            if not long_thin or gap < _BAR_INNER * (second[1] - first[0]):
                continue  # bars run along the slot, long and thin, with room for a photo between
            start, end = first[0], second[1]
            ground = background if side_by_side else background.T  # rows along the bars, columns across
            beside = (ground[lo:hi, max(0, start - 2) : start], ground[lo:hi, end : end + 2])  # two pixels out:
            ends = (ground[max(0, lo - 2) : lo, first[1] : second[0]].T, ground[hi : hi + 2, first[1] : second[0]].T)
            outside = [strip.any(axis=1) for strip in (*beside, *ends) if strip.size]  # past the edge's mixed one
            if any(line.mean() < _BAR_GROUND for line in outside):
                continue  # the page around the slot, not more of a garment (stripes) or a watch (straps)
            slot = (start, lo, end - start, hi - lo) if side_by_side else (lo, start, hi - lo, end - start)
            if best is None or slot[2] * slot[3] > best[2] * best[3]:
                best = slot
    return best


def between_bars(region: np.ndarray) -> Box | None:
    """The box (in ``region``'s pixels) of the photo between two bars of one colour along its left
    and right sides (a pillarbox) or its top and bottom (a letterbox), or None where it has no such
    bars. A bar runs along at least ``_BAR_SPAN`` of the side, is at least ``_BAR_MIN`` of the
    region wide, and each of its lines is ``_BAR_FILL`` of its colour; the photo between is at least
    ``_BAR_INNER`` of the region, with a straight edge next to each bar: a line with at most
    ``_BAR_EDGE`` of the bars' colour (a product on white keeps its white margins; module doc, step 5).

    >>> photo = np.full((100, 100, 3), 250, np.uint8); photo[30:70, 20:80] = (200, 30, 30)
    >>> slot = np.zeros((100, 180, 3), np.uint8); slot[:, 40:140] = photo  # black bars beside it
    >>> between_bars(slot)
    (40, 0, 140, 100)
    >>> between_bars(photo) is None  # a product on white: its white sides are its own
    True
    """
    for across in (1, 0):  # bars beside the photo (columns), then above and below it (rows)
        lines = region if across == 1 else region.transpose(1, 0, 2)
        height, width = lines.shape[:2]
        if width < 2 * _MIN_SIDE or height < _MIN_SIDE:
            continue
        near_left, near_right = max(1, round(0.03 * width)), min(width - 2, round(0.97 * width))
        middle = slice(height // 4, max(height // 4 + 1, 3 * height // 4))
        left, right = np.median(lines[middle, near_left], axis=0), np.median(lines[middle, near_right], axis=0)
        if np.abs(left - right).max() > _TOLERANCE:
            continue
        bar = np.abs(lines.astype(np.int16) - left.astype(np.int16)).max(axis=2) <= _TOLERANCE
        top, bottom = _longest_run(bar[:, near_left] & bar[:, near_right])
        if bottom - top < _BAR_SPAN * height:
            continue
        share = bar[top:bottom].mean(axis=0)  # of each line, the bars' colour
        filled = share >= _BAR_FILL
        skip = max(2, round(0.03 * width))  # lines mixed with the edge beyond the bars
        start, end = leading_run(filled, skip), width - leading_run(filled[::-1], skip)
        if start < _BAR_MIN * width or width - end < _BAR_MIN * width or end - start < _BAR_INNER * width:
            continue
        if min(share[start : start + skip].min(), share[end - skip : end].min()) > _BAR_EDGE:
            continue  # no straight edge: the photo's own ground runs on into the "bars" (its margins)
        if max(bar[top, start:end].mean(), bar[bottom - 1, start:end].mean()) > 0.5:
            continue  # the bars' colour is the photo's own ground, on its other sides too
        return (start, top, end, bottom) if across == 1 else (top, start, bottom, end)
    return None


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """(start, end) of the longest run of True in ``flags`` ((0, 0) where none)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    if len(edges) == 0:
        return 0, 0
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def leading_run(flags: np.ndarray, skip: int = 0) -> int:
    """Where the first run of True ends, past up to ``skip`` False at the start (0: none); with
    ``skip`` 0, how many of ``flags`` are True before the first False.

    >>> leading_run(np.array([True, True, False, True])), leading_run(np.array([False, True, True, False]), 1)
    (2, 3)
    """
    first = int(np.argmax(flags[: skip + 1])) if flags[: skip + 1].any() else -1
    if first < 0:
        return 0
    after = np.flatnonzero(~flags[first:])
    return first + (int(after[0]) if len(after) else len(flags) - first)


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
