"""The cascade: the end-to-end pipeline over `convert`, `stage1_detect` and `stage2_segment`, and the CLI.

    pipeline   a full-hand prediction -> carpal region -> stage 2 -> pasted back
    base       any full-hand model's submission as that full-hand prediction
    paste      stage 2 pasted over the full-hand masks, and the plan of which classes to paste
    ensemble   several models of one stage used as one
    predict    a folder of images -> the submission CSV (`cascade predict`)
    evaluate   Dice on held-out patients at native size (`cascade evaluate`), kept in scores; tuning picks
               the paste plan from them; report writes the tables
    visualize  outlines drawn over an image;  fullhand  the demo's full-hand baseline
    demo       the whole tool on generated data (`cascade demo`)
    cli        `cascade VERB`: one thin command per library function
"""

import plumbing  # noqa: F401  (the offline environment before anything else is imported)
