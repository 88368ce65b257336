"""YAML from people within bounds: aliases refused (billion laughs), a size cap, one range check per value."""

from __future__ import annotations

import pytest

from astroclassify.errors import ConfigError

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def test_a_billion_laughs_recipe_or_taxonomy_is_refused_before_it_expands(tmp_path):
    from astroclassify.preparation.taxonomy import load_taxonomy
    from astroclassify.training.config import load_recipe
    from astroclassify.training.multitask import load_encoder_recipe

    assert len(LAUGHS) < 500  # 9**9 strings once walked
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS)
    for load in (load_recipe, load_encoder_recipe, load_taxonomy):
        with pytest.raises(ConfigError, match="anchors and aliases"):
            load(bomb)


def test_a_huge_or_deep_yaml_file_is_refused_with_its_size(tmp_path):
    from astroclassify.files.yamltext import read_yaml

    big = tmp_path / "big.yaml"
    big.write_text("data: [" + "x, " * 600_000 + "]\n")
    with pytest.raises(ConfigError, match=r"over the 1 MiB a YAML file may have"):
        read_yaml(big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply|not valid YAML"):
        read_yaml(deep)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("image_size: 100000", "image_size must be 0"),
        ("lr: .nan", "lr must be from"),
        ("lr: -1", "lr must be from"),
        ("epochs: 0", "epochs must be from"),
        ("batch_size: 1000000", "batch_size must be from"),
        ("test_frac: 0.6\nval_frac: 0.5", "test_frac \\+ val_frac"),
        ("schedule: sawtooth", "schedule must be one of"),
    ],
)
def test_recipe_values_get_the_same_ranges_as_the_command_line(tmp_path, line, says):
    """A recipe's `image_size: 100000` ran out of memory, `lr: .nan` failed after 27 s of decoding."""
    from astroclassify.training.config import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: [x]\n{line}\n")
    with pytest.raises(ConfigError, match=says):
        load_recipe(recipe)


def test_a_config_made_in_python_is_checked_the_same_way():
    from astroclassify.training.config import TrainConfig

    for bad, says in (({"lr": float("nan")}, "lr must be"), ({"image_size": 100000}, "image_size must be")):
        with pytest.raises(ConfigError, match=says):
            TrainConfig(**bad)
    assert TrainConfig(image_size=0).image_size == 0 and TrainConfig(image_size=1024).image_size == 1024


def test_a_head_of_an_encoder_recipe_is_checked_too(tmp_path):
    from astroclassify.training.multitask import load_encoder_recipe

    recipe = tmp_path / "enc.yaml"
    recipe.write_text("heads:\n  dso:\n    classes: [x]\n    image_size: 100000\n")
    with pytest.raises(ConfigError, match="head 'dso': image_size must be 0"):
        load_encoder_recipe(recipe)
