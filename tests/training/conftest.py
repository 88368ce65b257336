import pytest

from tests.conftest import small_cnn_config


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory):
    """A small_cnn trained for 12 epochs on the 48 synthetic images (seconds)."""
    from astroclassify.training.train import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    train(small_cnn_config(tiny_dataset, out, epochs=12, folds=3))
    return out
