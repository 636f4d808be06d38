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
6. where no block is taken, the photo's straight edges (:func:`_edge_rectangle`): a pasted photo
   whose ground is near the frame's colour (a white photo on a light grey banner) or that touches
   a line of text merges with the background or with the text, but its sides are still a faint,
   straight step (``_EDGE_STEP``, on a ``_EDGE_SIDE`` px copy) with the frame flat beyond them. The
   largest rectangle whose sides (3 at least; the others on the canvas's border) are such steps
   along ``_EDGE_SUPPORT`` of their length, with ``_EDGE_GROUND`` of the strip outside them
   background as in step 1 (the frame, not more of a garment: a stripe's edge, a panel's), is the
   region, where a piece of foreground is in it and one wholly apart from it (a word, a price: a
   bag's body or a pair of trousers is a rectangle too, but one piece with the rest of its photo)
   (issue 14 phase 30);
7. where neither finds one, a photo on a pad (:func:`_padded_photo`, on the same copy): the
   canvas's uniform margins are trimmed side by side (a line under ``_EDGE_STEP`` from its side's
   outermost colour along ``_PAD_FLAT`` of it), and each trimmed side must end at the photo's
   straight edge (``_PAD_STEP`` of the line a pixel inside an ``_EDGE_STEP`` away; a side trimmed
   into the photo's own ground goes back to the border, the photo touching it); inside, a ring of
   ``_PAD_RING`` px is one colour (the photo's ground, ``_PAD_GROUND`` of it) around something
   else (``_PAD_PRODUCT`` of the box: its product). A photo that spans the canvas one way has its
   white ground as its columns' end colour (step 1), so the blocks see only its product; a clutch
   on the catalog's white is a rectangle of straight edges too, but its own edge all round, with
   no ground (issue 14 phase 32). Where no side of one colour is found, the pad may be a ramp (a
   banner's gradient with no words on it): a border line that is not one colour but changes
   smoothly along it (no step of ``_EDGE_STEP`` between neighbours: a product or a word touching
   the border has one) is trimmed where the next line continues it, and each line after is
   trimmed while within ``_EDGE_STEP`` of the one outside it, up to the photo's edge, a step from
   that line; at least one side is trimmed from such a line (issue 14 phase 38). The photo check
   leaves this step out (:func:`dedup.photomatch.box_finder`): a pad lies outside the images' fit.
8. where none of these finds one, a photo turned in its canvas (:func:`_turned_photo`, on the
   step-1 copy): a copy rotated by a few degrees on a canvas grown to hold it has its four corners
   filled with one colour each (black, white, the pad's), and the whole image's embedding reads
   those wedges. Each corner's fill (within ``_TOLERANCE`` of it, flood-filled) is left out; what
   is left must be one convex quadrilateral (``_TURN_SOLID``), turned by ``_TURN_TILT`` degrees or
   more, covering ``_TURN_SHARE`` of the canvas and spanning it (``_TURN_SPAN``: its corners on
   the canvas's sides); the region is the largest upright rectangle inside it. On the new dev set
   it adds a region to 42 of 16,115 images (rotated copies and stacks, no original) and to none of
   the 9,583 shared catalog photos (issue 14 phase 39). Like the pad, it serves the search only.

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
_EDGE_SIDE = 160  # px: the longer side of the copy a pasted photo's straight edges are read on
_EDGE_STEP = 8  # an edge pixel: the colours either side (2 px apart) differ by this much (max over channels)
_EDGE_GAP = 3  # px of a side's line bridged (a product's own colour next to the frame's)
_EDGE_RUN = 0.15  # a side's line runs along at least this share of the canvas (and 8 px)
_EDGE_LINES = 14  # lines kept each way, the longest: a rectangle is sought among them
_EDGE_SUPPORT = 0.75  # a side is an edge (within a pixel) along this share of its length
_EDGE_END = 0.5  # ... and of each fifth at its ends (it reaches its corners)
_EDGE_GROUND = 0.6  # ... and the strip 2-4 px outside it this share background (step 1): the frame
_EDGE_SIDES = 3  # sides read as edges; the others lie on the canvas's border
_EDGE_MIN_SHARE = 0.04  # a rectangle covers at least this share of the canvas
_PAD_FLAT = 0.98  # a pad's margin line: at least this share of it under ``_EDGE_STEP`` from the margin's colour
_PAD_STEP = 0.9  # ... and the photo's edge past it: at least this share of it an ``_EDGE_STEP`` from that colour
_PAD_RING = 3  # px (at ``_EDGE_SIDE``): the ring inside the photo's edges its ground is read on
_PAD_GROUND = 0.6  # ... at least this share of it one colour (the photo's ground)
_PAD_PRODUCT = 0.2  # ... and at least this share of the photo another (its product)
_TURN_SHARE = (0.4, 0.95)  # a turned photo covers this share of its canvas (the corners' fill the rest),
_TURN_SOLID = 0.97  # ... is convex: at least this share of its hull,
_TURN_TILT = 2.0  # ... a quadrilateral turned at least this many degrees (an upright one is a pad's),
_TURN_SPAN = 0.95  # ... and spans at least this share of the canvas both ways (its corners on its sides)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels (x1, y1 exclusive)
REGION_INPUT_VERSION = 6
"""What a region's embedding is computed on (:func:`square_region`; 1: the crop, squashed; 2: the
region before bars were cut off; 3: before a photo's straight edges were read; 4: before a pad's
ramp was read; 5: before a turned photo was read): a previous run's region embeddings of another
version are computed again (``dedup/incremental.py``)."""


def region_on(embed_settings: EmbedSettings) -> bool:
    """Whether the features stage looks for a content region (an embedder and ``embed.region``)."""
    return embed_settings.backend != "none" and embed_settings.region


def content_box(pixels: np.ndarray, settings: EmbedSettings, padded: bool = True) -> Box | None:
    """The box of the photo pasted into ``pixels`` (RGB, height x width x 3), or None when the
    image is not a frame around a smaller photo (module doc). ``padded``: a photo on a pad or
    turned in its canvas (steps 7 and 8) counts too."""
    h, w = pixels.shape[:2]
    first, first_scale = small, scale = _shrunk(pixels, settings.region_side)
    found = _largest_block(small, settings)
    if found is None:
        small, scale = _shrunk(pixels, _EDGE_SIDE)
        found = _edge_rectangle(small, settings.region_max_share)
        if found is None and padded:
            found = _padded_photo(small, settings.region_max_share)
        if found is None and padded:
            small, scale = first, first_scale  # the corners are read on the step-1 copy
            found = _turned_photo(small, settings.region_max_share)
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


def _shrunk(pixels: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``pixels`` shrunk to at most ``side`` px on the longer side (area-averaged), and the scale."""
    h, w = pixels.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1:
        return pixels, scale
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_AREA), scale


def _edge_rectangle(small: np.ndarray, max_share: float) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the largest rectangle on ``small`` whose sides are straight edges
    with a flat frame beyond them (module doc, step 6), or None.

    >>> frame = np.full((240, 400, 3), 240, np.uint8)  # a light grey banner
    >>> frame[30:210, 150:330] = 255  # a white photo on it: within the background's tolerance
    >>> frame[100:112, 20:110] = 30  # a line of text beside it
    >>> cv2.ellipse(frame, (240, 120), (50, 70), 0, 0, 360, (40, 60, 150), -1)  # its product
    ... # doctest: +ELLIPSIS
    array(...)
    >>> _edge_rectangle(frame, 0.8)
    (150, 30, 180, 180)
    >>> _edge_rectangle(frame[30:210, 150:330], 0.8) is None  # the photo alone: no frame
    True
    """
    colours = small.astype(np.int16)
    height, width = colours.shape[:2]
    background = _background(colours)
    pieces = _pieces(background)
    if len(pieces) < 2:  # a photo's product and a piece of the frame (:func:`_framed`)
        return None
    across = np.zeros((height, width), np.uint8)  # a step between the pixels left and right of it
    across[:, 1:-1] = _channel_max(np.abs(colours[:, 2:] - colours[:, :-2])) >= _EDGE_STEP
    down = np.zeros((height, width), np.uint8)  # ... above and below it
    down[1:-1] = _channel_max(np.abs(colours[2:] - colours[:-2])) >= _EDGE_STEP
    xs = sorted({0, width, *_edge_lines(across, height)})
    ys = sorted({0, height, *_edge_lines(down.T, width)})
    xp, yp = np.array(list(itertools.combinations(xs, 2))), np.array(list(itertools.combinations(ys, 2)))
    x0, x1 = np.repeat(xp[:, 0], len(yp)), np.repeat(xp[:, 1], len(yp))
    y0, y1 = np.tile(yp[:, 0], len(xp)), np.tile(yp[:, 1], len(xp))
    bw, bh = x1 - x0, y1 - y0
    share = bw * bh / float(width * height)
    shaped = (share >= _EDGE_MIN_SHARE) & (share <= max_share) & (bw <= _MAX_ASPECT * bh) & (bh <= _MAX_ASPECT * bw)
    x0, x1, y0, y1, bw, bh, share = (v[shaped] for v in (x0, x1, y0, y1, bw, bh, share))
    # an edge within a pixel of a side, summed along it: [position along the side, the side's line]
    down_columns = np.zeros((height + 1, width), np.int32)
    down_columns[1:] = np.cumsum(cv2.dilate(across, np.ones((1, 3), np.uint8)), axis=0)
    along_rows = np.zeros((width + 1, height), np.int32)
    along_rows[1:] = np.cumsum(cv2.dilate(down, np.ones((3, 1), np.uint8)), axis=1).T
    left, right = np.minimum(x0, width - 1), x1 - 1
    top, bottom = np.minimum(y0, height - 1), y1 - 1

    def edged(sums: np.ndarray, line: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        # an edge along the side, and at each of its ends: the side runs on to its corners
        part = np.maximum((end - start) // 5, 1)
        share = [(sums[hi, line] - sums[lo, line]) / (hi - lo) for lo, hi in
                 ((start, end), (start, start + part), (end - part, end))]  # fmt: skip
        return (share[0] >= _EDGE_SUPPORT) & (np.minimum(share[1], share[2]) >= _EDGE_END)

    sides_edged = (edged(down_columns, left, y0, y1), edged(down_columns, right, y0, y1),
                   edged(along_rows, top, x0, x1), edged(along_rows, bottom, x0, x1))  # fmt: skip
    ground = np.zeros((height + 1, width + 1), np.int64)  # the background's pixels summed over boxes
    ground[1:, 1:] = background.astype(np.int64).cumsum(0).cumsum(1)

    def ground_share(bx0: np.ndarray, by0: np.ndarray, bx1: np.ndarray, by1: np.ndarray) -> np.ndarray:
        bx0, bx1 = np.clip(bx0, 0, width), np.clip(bx1, 0, width)
        by0, by1 = np.clip(by0, 0, height), np.clip(by1, 0, height)
        pixels = ground[by1, bx1] - ground[by0, bx1] - ground[by1, bx0] + ground[by0, bx0]
        return pixels / np.maximum((bx1 - bx0) * (by1 - by0), 1)

    beyond = (ground_share(x0 - 5, y0, x0 - 2, y1), ground_share(x1 + 1, y0, x1 + 4, y1),
              ground_share(x0, y0 - 5, x1, y0 - 2), ground_share(x0, y1 + 1, x1, y1 + 4))  # fmt: skip
    on_border = (x0 <= 1, x1 >= width - 1, y0 <= 1, y1 >= height - 1)
    chosen = np.ones(len(x0), bool)
    sides = np.zeros(len(x0), np.int64)
    for border, along, outside in zip(on_border, sides_edged, beyond, strict=True):
        chosen &= border | (along & (outside >= _EDGE_GROUND))
        sides += ~border
    chosen &= sides >= _EDGE_SIDES
    if not chosen.any():
        return None
    best = np.flatnonzero(chosen)[np.argmax(share[chosen])]
    box = int(x0[best]), int(y0[best]), int(bw[best]), int(bh[best])
    return box if _framed(pieces, box) else None


def _padded_photo(small: np.ndarray, max_share: float) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of a photo on a pad (module doc, step 7), or None: on a pad of one
    colour, else on a ramp.

    >>> pad = np.full((120, 200, 3), (40, 90, 160), np.uint8)  # a blue pad
    >>> pad[10:110, 20:120] = 255  # a white photo on it, touching neither side
    >>> cv2.circle(pad, (70, 60), 30, (200, 30, 30), -1)  # its product
    ... # doctest: +ELLIPSIS
    array(...)
    >>> _padded_photo(pad, 0.8)
    (20, 10, 100, 100)
    >>> ramp = np.linspace(230, 10, 120).astype(np.uint8)[:, None, None].repeat(200, 1).repeat(3, 2)
    >>> ramp[0:110, 60:160] = pad[10:120, 20:120]  # the same photo on a grey ramp, touching its top
    >>> _padded_photo(ramp, 0.8)
    (60, 0, 100, 110)
    >>> product = np.full((120, 200, 3), 255, np.uint8)  # a clutch on the catalog's white: itself
    >>> product[40:80, 30:170] = (90, 40, 30)  # a rectangle, one colour to its edges
    >>> _padded_photo(product, 0.8) is None
    True
    """
    colours = small.astype(np.int16)
    height, width = colours.shape[:2]
    for ramp in (False, True):
        box = _trimmed_pad(colours, ramp)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        if (x1 - x0) * (y1 - y0) > max_share * width * height:
            continue
        inside = colours[y0:y1, x0:x1]
        ring = np.concatenate([inside[:_PAD_RING], inside[-_PAD_RING:], inside[:, :_PAD_RING].swapaxes(0, 1),
                               inside[:, -_PAD_RING:].swapaxes(0, 1)], axis=1).reshape(-1, 3)  # fmt: skip
        ground = np.median(ring, axis=0)
        if (_channel_max(np.abs(ring - ground)) <= _TOLERANCE).mean() < _PAD_GROUND:
            continue  # no ground of one colour around it: a product's own edges (a clutch, a box)
        if (_channel_max(np.abs(inside - ground)) > _TOLERANCE).mean() < _PAD_PRODUCT:
            continue  # nothing on that ground
        return x0, y0, x1 - x0, y1 - y0
    return None


def _turned_photo(small: np.ndarray, max_share: float) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the largest upright rectangle inside a photo turned in its canvas
    (module doc, step 8), or None.

    >>> photo = np.full((80, 60, 3), 255, np.uint8)
    >>> photo[20:60, 15:45] = (180, 40, 40)  # a product on its white ground
    >>> from PIL import Image
    >>> turned = np.asarray(Image.fromarray(photo).rotate(8, expand=True, fillcolor=(0, 0, 0)))
    >>> x, y, w, h = _turned_photo(turned, 0.8)
    >>> bool(0 < x < 12 and 0 < y < 12 and w * h > 0.5 * turned.shape[0] * turned.shape[1])
    True
    >>> _turned_photo(photo, 0.8) is None  # upright: the corners' fill is the photo's white ground
    True
    """
    colours = np.array(small, order="C")  # writable: OpenCV takes the image as an output (it fills the mask only)
    height, width = colours.shape[:2]
    corners = np.zeros((height, width), bool)
    flags = cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
    for x, y in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
        if not corners[y, x]:
            mask = np.zeros((height + 2, width + 2), np.uint8)
            cv2.floodFill(colours, mask, (x, y), 0, (_TOLERANCE,) * 3, (_TOLERANCE,) * 3, flags)
            corners |= mask[1:-1, 1:-1] > 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~corners).astype(np.uint8), connectivity=4)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    part = (labels == largest).astype(np.uint8)
    share = part.mean()
    _, _, part_width, part_height, _ = stats[largest]
    spans = part_width >= _TURN_SPAN * width and part_height >= _TURN_SPAN * height
    if not _TURN_SHARE[0] <= share <= _TURN_SHARE[1] or not spans:
        return None
    outline = max(cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0], key=cv2.contourArea)
    hull = cv2.convexHull(outline)
    if cv2.contourArea(outline) < _TURN_SOLID * cv2.contourArea(hull):
        return None
    angle = cv2.minAreaRect(outline)[2] % 90
    if len(cv2.approxPolyDP(hull, 0.03 * cv2.arcLength(hull, True), True)) != 4 or min(angle, 90 - angle) < _TURN_TILT:
        return None
    x0, y0, x1, y1 = _largest_rectangle(part.astype(bool))
    if (x1 - x0) * (y1 - y0) > max_share * width * height:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the largest upright rectangle of True in ``mask`` (a histogram of each
    column's run down to each row, and the largest rectangle under it by a stack).

    >>> mask = np.zeros((6, 8), bool)
    >>> mask[1:5, 2:7] = True
    >>> mask[0, 3] = True
    >>> _largest_rectangle(mask)
    (2, 1, 7, 5)
    """
    heights = np.zeros(mask.shape[1] + 1, int)  # a zero past the last column empties the stack
    best, box = 0, (0, 0, 0, 0)
    for y, row in enumerate(mask):
        heights[:-1] = np.where(row, heights[:-1] + 1, 0)
        stack: list[tuple[int, int]] = []  # (first column, height), heights rising
        for x, height in enumerate(heights.tolist()):
            start = x
            while stack and stack[-1][1] >= height:
                start, top = stack.pop()
                if top * (x - start) > best:
                    best, box = top * (x - start), (start, y - top + 1, x, y + 1)
            stack.append((start, height))
    return box


def _trimmed_pad(colours: np.ndarray, ramp: bool) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of ``colours`` (int16 RGB) inside its pad's margins, each side ending at
    the photo's straight edge or on the canvas's border, or None where no side is trimmed so.
    ``ramp``: only where a border line is a ramp (not one colour, no step along it); a line inside
    the border is trimmed where it continues the line outside it (a gradient), not where it is its
    border line's colour, and at least one side must be trimmed from a ramp (module doc, step 7)."""
    height, width = colours.shape[:2]
    box = {"top": 0, "bottom": height, "left": 0, "right": width}
    border = dict(box)

    def line(side: str, inward: int = 0) -> np.ndarray:  # the box's line on ``side``, ``inward`` lines in
        x0, x1, y0, y1 = box["left"], box["right"], box["top"], box["bottom"]
        if side == "top":
            return colours[min(y0 + inward, height - 1), x0:x1]
        if side == "bottom":
            return colours[max(y1 - 1 - inward, 0), x0:x1]
        if side == "left":
            return colours[y0:y1, min(x0 + inward, width - 1)]
        return colours[y0:y1, max(x1 - 1 - inward, 0)]

    def share_within(a: np.ndarray, b: np.ndarray) -> float:
        return float((_channel_max(np.abs(a - b)) < _EDGE_STEP).mean())

    def margin(side: str) -> np.ndarray:  # what a line of the margin on ``side`` is compared with
        return line(side, -1) if ramp and box[side] != border[side] else colours_of[side]

    colours_of = {side: np.median(line(side), axis=0) for side in box}
    sloped = dict.fromkeys(box, False)  # a ramp's border line: not one colour, and no step along it
    if ramp:  # (a product or a word touching the border has one)
        sloped = {side: share_within(line(side), colours_of[side]) < _PAD_FLAT
                  and _channel_max(np.abs(np.diff(line(side), axis=0))).max() < _EDGE_STEP for side in box}  # fmt: skip
        if not any(sloped.values()):
            return None  # no side is a ramp: a pad of one colour is read as such, or not at all
    inward = {"top": 1, "bottom": -1, "left": 1, "right": -1}
    trimming = True
    while trimming and box["right"] - box["left"] > 8 and box["bottom"] - box["top"] > 8:
        trimming = False
        for side in box:
            flat = share_within(line(side), margin(side)) >= _PAD_FLAT
            if ramp and box[side] == border[side] and not flat and sloped[side]:  # its next line continues it
                flat = share_within(line(side), line(side, 1)) >= _PAD_FLAT
            if flat:
                box[side] += inward[side]
                trimming = True

    def stepped(side: str) -> bool:  # the photo's edge, a pixel in (past a resize's blend), all along it
        return 1 - share_within(line(side, 1), margin(side)) >= _PAD_STEP

    for _ in range(2):  # a side trimmed into the photo's own ground (it touched the border) is the border
        for side in box:
            if box[side] != border[side] and not stepped(side):
                box[side] = border[side]
    if box == border or any(box[side] != border[side] and not stepped(side) for side in box):
        return None
    if ramp and not any(box[side] != border[side] and sloped[side] for side in box):
        return None  # no side trimmed is a ramp
    return box["left"], box["top"], box["right"], box["bottom"]


def _pieces(background: np.ndarray) -> np.ndarray:
    """The foreground's pieces (closed by 3x3, 8-connected) of at least ``_MIN_PIECE`` of the
    canvas, as rows of (x, y, width, height, area)."""
    stats = _foreground_parts(background)[2][1:]
    return stats[stats[:, 4] >= _MIN_PIECE * background.size]


def _foreground_parts(background: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """What is not ``background``, closed by 3x3, in 8-connected parts: (their count with the
    background's label 0, the labels, each label's (x, y, width, height, area))."""
    foreground = cv2.morphologyEx((~background).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    return n, labels, stats


def _framed(pieces: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Whether ``box`` is a photo in a frame by the ``pieces`` (:func:`_pieces`): one of them in it
    (the photo's product) and one wholly outside it (the frame's own: a word, a price, a button).
    A part of a product (a bag's body under its handle, a pair of trousers between a shirt and
    shoes) has the rest of its photo around it in one piece with it, and nothing apart; a patch
    of a noisy copy's ground holds nothing."""
    x, y, w, h = box
    px, py, pw, ph = (pieces[:, i] for i in range(4))
    apart = (px > x + w) | (px + pw < x) | (py > y + h) | (py + ph < y)
    return bool(apart.any() and (~apart).any())


def _background(colours: np.ndarray) -> np.ndarray:
    """Pixels within ``_TOLERANCE`` of the colour at either end of their row or of their column
    (``colours``: int16 RGB): a uniform fill, a gradient, a screenshot's frame."""
    background = np.zeros(colours.shape[:2], bool)
    for edge in (colours[:, :1], colours[:, -1:], colours[:1, :], colours[-1:, :]):
        background |= _channel_max(np.abs(colours - edge)) <= _TOLERANCE
    return background


def _channel_max(d: np.ndarray) -> np.ndarray:
    """The max over the last (colour) axis, pairwise: numpy's reduce over 3 is 5x slower."""
    return np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])


def _edge_lines(edges: np.ndarray, length: int) -> list[int]:
    """The columns of ``edges`` (rows x columns) along which an edge runs, gaps of ``_EDGE_GAP`` px
    bridged, over ``_EDGE_RUN`` of ``length`` (and 8 px): each a local maximum of its run, the
    ``_EDGE_LINES`` longest."""
    bridged = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((2 * _EDGE_GAP + 1, 1), np.uint8)) > 0
    counted = np.cumsum(bridged, axis=0, dtype=np.int32)  # down each column; a run: since the last gap
    runs = (counted - np.maximum.accumulate(np.where(bridged, 0, counted), axis=0)).max(axis=0)
    before, after = np.concatenate([[0], runs[:-1]]), np.concatenate([runs[1:], [0]])
    peaks = np.flatnonzero((runs >= max(8, _EDGE_RUN * length)) & (runs >= before) & (runs > after))
    return sorted(peaks[np.argsort(-runs[peaks], kind="stable")][:_EDGE_LINES].tolist())


def _largest_block(small: np.ndarray, settings: EmbedSettings) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the content block on the working-size image, or None (module doc)."""
    colours = small.astype(np.int16)
    height, width = colours.shape[:2]
    background = _background(colours)
    n, labels, stats = _foreground_parts(background)
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


def box_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
    """Intersection over union of two (x0, y0, x1, y1) boxes; None where neither has an area.

    >>> box_overlap((0, 0, 10, 10), (5, 0, 15, 10))
    0.3333333333333333
    >>> box_overlap((0, 0, 10, 10), (20, 20, 30, 30))
    0.0
    """
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    shared = max(width, 0) * max(height, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - shared
    return shared / union if union > 0 else None


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
