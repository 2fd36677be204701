"""Helpers shared by every subpackage: checks, the prediction loop, model state, atomic files.

Nothing here is public API; subpackages import these names, users import the subpackages.
"""

from .checks import (
    NOISE_BOUND,
    check_choice,
    check_class_index,
    check_device,
    check_images,
    check_labels,
    check_positive_float,
    check_positive_int,
    clamp_noisy_images,
    module_device,
)
from .io import save_figure_atomic, write_atomic, write_json_atomic
from .model_state import call_model, check_logits, checked_call, evaluation_mode, num_classes_of, output_width
from .predict import predict, share_predicted
from .serialise import JsonFile, check_keys, float_array
from .tensors import TensorOrTuple, as_tuple, expand_targets, mirror, target_classes

__all__ = [
    "JsonFile",
    "NOISE_BOUND",
    "TensorOrTuple",
    "as_tuple",
    "call_model",
    "check_choice",
    "check_class_index",
    "check_device",
    "check_images",
    "check_keys",
    "check_labels",
    "check_logits",
    "check_positive_float",
    "check_positive_int",
    "checked_call",
    "clamp_noisy_images",
    "evaluation_mode",
    "expand_targets",
    "float_array",
    "mirror",
    "module_device",
    "num_classes_of",
    "output_width",
    "predict",
    "save_figure_atomic",
    "share_predicted",
    "target_classes",
    "write_atomic",
    "write_json_atomic",
]
