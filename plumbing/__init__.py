"""Machinery every package shares and none of it about hands: one-line user errors, atomic output,
the offline environment, bounded thread maps, and the checks and wording of config values.

    errors    CascadeError / DataError / Problem     atomic    write outputs so a crash leaves none half-written
    offline   no network at run time                 parallel  bounded_map: threads without holding a dataset
    values    range checks and values shortened for messages

Importing it applies the offline environment, before any package imports ultralytics, albumentations or smp.
"""

from . import offline

offline.apply()
