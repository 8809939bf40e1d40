from dataclasses import dataclass, field

import pytest

from convert.config import load_config
from convert.errors import CascadeError, DataError


@dataclass
class Inner:
    noise: float = 0.1
    size: tuple = (1, 2)


@dataclass
class Outer:
    epochs: int = 3
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\ninner:\n  noise: 1\n")
    cfg = load_config(Outer, path, ["name=abc", "inner.size=[3, 4]"])
    assert cfg == Outer(epochs=5, name="abc", inner=Inner(noise=1.0, size=(3, 4)))
    assert isinstance(cfg.inner.noise, float)


def test_unknown_keys_and_bad_overrides_are_named(tmp_path):
    with pytest.raises(DataError, match="unknown key.*epoch\\b"):
        load_config(Outer, None, ["epoch=1"])
    with pytest.raises(CascadeError, match="not key=value"):
        load_config(Outer, None, ["epochs"])
    with pytest.raises(DataError, match="config file not found"):
        load_config(Outer, tmp_path / "none.yaml")
