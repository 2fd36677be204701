"""
Quick start
===========

Search the class patterns of three digits with a small CNN, measure them against the
floor and chance, compare them with a Captum attribution and draw them. This tutorial is
one script, ``docs/snippets/quickstart.py``, also downloadable as a Jupyter notebook (at
the end of the page); the test suite runs both, so they stay in step with the package. It
takes about ten seconds on a laptop CPU (plus ten the first time, to train the model).
"""

# %%
# Data and model
# --------------
#
# Pixels are in [0, 1]. If your model expects normalised inputs, put the normalisation
# inside the model (``nn.Sequential(Normalize(...), model)``): the search mixes raw pixels.

import torch

from captum_classpattern import (
    captum_attribution,
    floor_rate,
    load_digits,
    plot_class_patterns,
    predictive_power,
    random_pixel_power,
    visualize_class_pattern,
)
from captum_classpattern.attr import ClassPattern, select_canvases, top_k_pattern
from captum_classpattern.training import digits_model

torch.set_num_threads(1)
data = load_digits(size=32)  # train / search / eval splits of 1 x 32 x 32 images in [0, 1]
model = digits_model()  # a small CNN, trained once (about 10 s) and cached

# %%
# Search the maps
# ---------------
#
# :meth:`~captum_classpattern.attr.ClassPattern.attribute` follows Captum's contract:
# ``inputs`` are the canvases, ``target`` one class per canvas (or one int for all),
# ``baselines`` the images the canvas pixels are pasted onto (a tensor with
# ``baseline_labels``, or a DataLoader of ``(images, labels)``). Each canvas's own class is
# left out of its search set. Pass ``inputs=None`` to let the search pick the canvases.

classes = [0, 3, 7]
# One canvas per class: the search image the model is most confident about.
canvases = select_canvases(model, data.search.images, data.search.labels, classes)
# All three maps are searched together, on images of the *other* classes.
maps = ClassPattern(model).attribute(
    canvases,
    target=classes,
    baselines=data.search.images,
    baseline_labels=data.search.labels,
    seed=0,
)
print(maps.shape)  # shaped like the canvases, values in [0, 1]

# %%
# Measure the patterns
# --------------------
#
# A pattern's *predictive power* is the share of held-out images of the other classes
# that the model assigns to the class once the pattern is stamped on them. Read it
# against two numbers: the *floor* (the share already assigned to the class without any
# pattern) and *chance* (as many random pixels of the same canvas).

images, labels = data.eval.images, data.eval.labels  # held out: never seen by the search
patterns, powers = [], []
for canvas, one_map, cls in zip(canvases, maps, classes):
    pattern = top_k_pattern(one_map, canvas, k=0.05)  # the top 5% pixels, canvas values
    power = predictive_power(model, pattern, images, labels, cls)
    floor = floor_rate(model, images, labels, cls)
    chance = random_pixel_power(model, canvas, images, labels, cls, k=0.05)
    print(f"class {cls}: power {power:.2f}  floor {floor:.2f}  random pixels {chance:.2f}")
    patterns.append(pattern)
    powers.append(power)

# %%
# Compare with a Captum attribution
# ---------------------------------
#
# Any attribution of the canvas ranks its pixels, so its top-k pixels can be stamped and
# measured the same way.

# The same measurement for a standard attribution of the same canvas.
attribution = captum_attribution(model, "IntegratedGradients", canvases[2], target=7)
top_pixels = top_k_pattern(attribution, canvases[2], k=0.05)
power = predictive_power(model, top_pixels, images, labels, 7)
print(f"class 7, top 5% IntegratedGradients pixels: power {power:.2f}")

# %%
# On this model the 5% most important pixels of IntegratedGradients flip none of the other
# digits to "7" (power 0.00), where the class pattern flips 93% of them: an attribution
# explains one image, a class pattern what makes *any* image look like the class. The
# :doc:`../examples/captum_baselines` example compares whole curves over k.
#
# Draw them
# ---------
#
# :func:`~captum_classpattern.visualization.plot_class_patterns` draws the paper's figure
# (canvas, map, pattern per class).

fig, axes = plot_class_patterns(
    canvases,
    maps,
    patterns=patterns,
    class_names=[str(c) for c in classes],
    powers=powers,
)

# %%
# :func:`~captum_classpattern.visualization.visualize_class_pattern` takes Captum's
# ``visualize_image_attr`` arguments (``method="heat_map"``, ``"blended_heat_map"``,
# ``"masked_image"``, ``"alpha_scaling"``, ``"original_image"``, and ``"pattern"``).

fig, ax = visualize_class_pattern(
    maps[2],
    canvases[2],
    method="blended_heat_map",
    title="class 7: map over its canvas",
)

# %%
# Grayscale patterns are drawn on a light blue ground, where white would hide the white
# strokes of the digits; colour patterns on white, as in the paper.
#
# As in Captum, every figure function returns ``(figure, axes)`` and by default draws
# through pyplot and shows the figure. ``fig.savefig("patterns.png")`` writes it to a
# file; a script that only saves its figures passes ``use_pyplot=False``, which builds the
# figure without touching pyplot's global state (the scripts of the
# :doc:`../examples/index` do).
