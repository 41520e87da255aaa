"""The one scoring path: raw rows in, scores and labels out, for evaluation, batch scoring, the API and
ONNX export alike. Imports neither Lightning nor W&B nor TensorBoard.

    from netad.inference import NetadPredictor
    model = NetadPredictor.from_pretrained("user/netad-model")   # or a local folder
"""

from netad.errors import ModelLoadError
from netad.inference.predictor import NetadPredictor, load_predictor

__all__ = ["ModelLoadError", "NetadPredictor", "load_predictor"]
