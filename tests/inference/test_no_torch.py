"""Inference must run where torch (and the training-only packages) are not installed."""

import subprocess
import sys

SCRIPT = """
import sys

class Block:  # as if these were not installed: their imports raise ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "albumentations", "cv2", "efficientnet_lite_pytorch", "sklearn", "scipy"):
            raise ImportError(f"No module named {name!r}")

sys.meta_path.insert(0, Block())
from astroclassify.cli import main
sys.argv = ["astroclassify", "predict", sys.argv[1], "--json"]
main()
"""


def test_predict_without_torch(shared_data):
    image = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(image)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert '"label": "galaxy"' in res.stdout and '"unusual": false' in res.stdout
