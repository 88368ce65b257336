"""``evaluate`` as a notebook user calls it."""

import shutil

import numpy as np
import pytest

import astroclassify
from astroclassify.errors import AstroClassifyError


@pytest.fixture(scope="module")
def folder(shared_data, tmp_path_factory):
    """Copies of six Hubble images in class folders."""
    root = tmp_path_factory.mktemp("six")
    for label in ("galaxy", "nebula"):
        (root / label).mkdir()
        for src in sorted((shared_data / "hubble-dso" / label).glob("*.jpg"))[:3]:
            shutil.copy(src, root / label / src.name)
    return root


def test_one_dataset_may_be_named_without_a_list(folder):
    one = astroclassify.evaluate("dso", str(folder), split="all", tta="none")
    listed = astroclassify.evaluate("dso", [folder], split="all", tta="none")
    assert len(one.keys) == len(listed.keys) == 6
    assert one.metrics["accuracy"] == listed.metrics["accuracy"]
    np.testing.assert_allclose(one.probs, listed.probs)


def test_a_missing_folder_is_an_error_that_names_it(tmp_path):
    with pytest.raises(AstroClassifyError, match="nowhere"):
        astroclassify.evaluate("dso", str(tmp_path / "nowhere"))


def test_a_single_dataset_in_a_train_config_is_one_dataset():
    assert astroclassify.TrainConfig(data="hubble-dso").data == ("hubble-dso",)
    assert astroclassify.TrainConfig(data=["a", "b"]).data == ("a", "b")
