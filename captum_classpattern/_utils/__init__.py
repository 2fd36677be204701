"""Helpers shared by every subpackage: checks, the prediction loop, model state, atomic files.

Nothing here is public API; subpackages import these names, users import the subpackages.
"""

from .arguments import (
    SEED_LIMIT,
    check_class_list,
    check_label_range,
    check_seed,
    check_sequence_length,
    is_one_shot,
    refuse_one_shot,
)
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
from .memory_format import ChannelsLastInputs, channels_last_inputs
from .model_state import call_model, check_logits, checked_call, evaluation_mode, num_classes_of, output_width
from .predict import predict, share_predicted
from .serialise import JsonFile, check_keys, float_array
from .settings import Replaceable, accepts_older_keywords, refuse_both
from .tensors import TensorOrTuple, as_tuple, expand_targets, mirror, target_classes
from .threads import (
    explicit_threads,
    set_threads,
    thread_report,
    thread_scope,
    thread_setting,
    tuned_threads,
)
from .timing import phase, recording_phases

__all__ = [
    "ChannelsLastInputs",
    "channels_last_inputs",
    "JsonFile",
    "Replaceable",
    "NOISE_BOUND",
    "SEED_LIMIT",
    "TensorOrTuple",
    "accepts_older_keywords",
    "as_tuple",
    "call_model",
    "check_choice",
    "check_class_index",
    "check_class_list",
    "check_device",
    "check_images",
    "check_keys",
    "check_label_range",
    "check_labels",
    "check_logits",
    "check_positive_float",
    "check_positive_int",
    "check_seed",
    "check_sequence_length",
    "checked_call",
    "clamp_noisy_images",
    "evaluation_mode",
    "explicit_threads",
    "expand_targets",
    "float_array",
    "is_one_shot",
    "mirror",
    "module_device",
    "num_classes_of",
    "output_width",
    "phase",
    "predict",
    "recording_phases",
    "refuse_both",
    "refuse_one_shot",
    "save_figure_atomic",
    "set_threads",
    "share_predicted",
    "target_classes",
    "thread_report",
    "thread_scope",
    "thread_setting",
    "tuned_threads",
    "write_atomic",
    "write_json_atomic",
]
