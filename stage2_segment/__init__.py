"""Stage 2: a UNet that looks again at the carpal region, at (close to) native resolution, for all bones in it.

    config       the typed settings (configs/stage2.yaml)       train        `cascade train-stage2`
    data         the split and the region crops with labels     cache        each image's crop built once, on disk
    geometry     image pixels <-> the network's input grid      model        network, input, loss
    checkpoint   best.pt / last.pt, safe to load                predict      images + regions -> probabilities
    distributed  torchrun, one process per GPU                  progress     the per-epoch bar
    results      results.csv / results.png / TensorBoard

Never imports stage1_detect or cascade.
"""

import plumbing  # noqa: F401  (the offline environment before albumentations or smp is imported)
