"""The default settings of every command (the YAML files here) and their loader (`loader.py`).

Each package declares its settings as a dataclass (stage1_detect.config, stage2_segment.config, cascade.demo,
synthetic_hands.settings); `load_config` fills one from a YAML file and `key=value` overrides, checking
every value's type. The YAMLs ship inside the wheel beside this file.
"""

from pathlib import Path

from .loader import build, load_config, parse_overrides

CONFIG_DIR = Path(__file__).resolve().parent

__all__ = ["CONFIG_DIR", "build", "load_config", "parse_overrides"]
