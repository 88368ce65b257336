"""Contract test: every registered model builds, runs, resets its head and exports to ONNX."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from astroclassify.errors import UnknownNameError
from astroclassify.inference.predictor import _session_bytes
from astroclassify.models import create_model, get_pretrained_cfg, list_models
from astroclassify.training.export import export_onnx
from astroclassify.training.gradcam import gradcam

# Parameter counts at 1000 classes: EfficientNet-Lite as published with the TF-Lite release
# (millions, one decimal); MobileNetV3 and SqueezeNet 1.1 exactly as torchvision publishes them.
PUBLISHED_PARAMS = {"efficientnet_lite0": 4.7, "efficientnet_lite1": 5.4, "efficientnet_lite2": 6.1}
EXACT_PARAMS = {"mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856, "squeezenet1_1": 1_235_496}


@pytest.mark.parametrize("name", list_models())
def test_model_contract(name, tmp_path):
    model = create_model(name, num_classes=3).eval()
    size = 64
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        assert torch.allclose(model.forward_head(feats), logits, atol=1e-5)
    assert logits.shape == (2, 3)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    path = export_onnx(model.eval(), tmp_path / "m.onnx", size)
    sess = ort.InferenceSession(_session_bytes(path), providers=["CPUExecutionProvider"])
    out, cam = sess.run(["logits", "cam"], {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(out - ref).max() < 2e-2  # fp16-stored weights
    # The exported Grad-CAM maps equal autograd Grad-CAM at the last feature map.
    ref_cam = gradcam(model, x).numpy()
    assert cam.shape == ref_cam.shape == (2, 5, *model.forward_features(x).shape[2:])
    assert np.abs(cam - ref_cam).max() <= 1e-2 * np.abs(ref_cam).max()
    full = sum(p.numel() for p in create_model(name, num_classes=1000).parameters())
    if name in PUBLISHED_PARAMS:
        assert round(full / 1e6, 1) == PUBLISHED_PARAMS[name]
    if name in EXACT_PARAMS:
        assert full == EXACT_PARAMS[name]


def test_every_zoo_architecture_is_registered():
    assert set(list_models()) >= {"small_cnn", "squeezenet1_1", "mobilenet_v3_small", "mobilenet_v3_large"} | set(
        PUBLISHED_PARAMS
    )


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "squeezenet1_1"])
def test_architectures_without_packaged_weights_say_so(name):
    from astroclassify.errors import ModelError

    with pytest.raises(ModelError, match="no ImageNet weights here"):
        create_model(name, pretrained=True)


def test_pretrained_weights_come_from_a_local_package():
    cfg = get_pretrained_cfg("efficientnet_lite0")
    assert cfg.weights is not None and cfg.weights().endswith(".pth")
    a = create_model("efficientnet_lite0", pretrained=True, num_classes=2)
    b = create_model("efficientnet_lite0", pretrained=True, num_classes=2)
    sa, sb = a.state_dict(), b.state_dict()
    assert torch.equal(sa["net._conv_stem.weight"], sb["net._conv_stem.weight"])  # loaded, not random


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean efficientnet_lite0"):
        create_model("efficientnet-lite0")
    assert list_models("small*") == ["small_cnn"]
