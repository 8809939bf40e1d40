"""Synthetic hand radiographs with polygon labels, written in the competition's exact layout.

The real images are private, so tests, the demo and CI run on look-alikes made here: a parametric hand
(29 bones placed by an anatomy table), a random pose (rotation, scale, shift, finger spread, bent wrists),
polygons annotated with the uneven point density of the real JSON, and an X-ray-like rendering of exactly
the masks those polygons rasterise to (`convert.masks.class_masks`), so that image and labels agree.

    anatomy   the bone tables          shapes       pose, outlines, annotation points
    settings  every tunable number     render       the radiograph look-alike
    film      the film around the hand: way up, size, placement, collimated field, a child's carpals
    marks     collimator bands, side letters, a logo     second_hand  part of an unlabelled second hand
    writer    the dataset layout on disk (`generate`)

Only the tests, the demo (`cascade demo`, `cascade synth`) and the benchmarks use it: no stage imports it.
"""

from .anatomy import REF_SIZE
from .film import Film
from .render import render
from .settings import (MAX_SIZE, MIN_SIZE, FilmConfig, PointsConfig, PoseConfig, RenderConfig, SynthConfig,
                       load_synth_config)
from .shapes import make_hand, place_hand
from .writer import TEST_LABEL_DIR, generate

__all__ = ["MAX_SIZE", "MIN_SIZE", "REF_SIZE", "Film", "FilmConfig", "PointsConfig", "PoseConfig", "RenderConfig",
           "SynthConfig", "TEST_LABEL_DIR", "generate", "load_synth_config", "make_hand", "place_hand", "render"]
