"""Helpers shared by every subpackage: checks, the prediction loop, model state, atomic files.

Nothing here is public API; subpackages import these names, users import the subpackages.
"""

from .checks import (
    check_choice,
    check_device,
    check_images,
    check_labels,
    check_positive_float,
    check_positive_int,
    module_device,
)
from .io import save_figure_atomic, write_atomic, write_json_atomic
from .model_state import call_model, evaluation_mode, num_classes_of
from .predict import predict, share_predicted
from .tensors import TensorOrTuple, as_tuple, expand_targets, mirror

__all__ = [
    "TensorOrTuple",
    "as_tuple",
    "call_model",
    "check_choice",
    "check_device",
    "check_images",
    "check_labels",
    "check_positive_float",
    "check_positive_int",
    "evaluation_mode",
    "expand_targets",
    "mirror",
    "module_device",
    "num_classes_of",
    "predict",
    "save_figure_atomic",
    "share_predicted",
    "write_atomic",
    "write_json_atomic",
]
