"""Quick start: the class patterns of three digits, measured against floor and chance.

Included piece by piece in docs/quickstart.rst and run by the test suite, so the page
cannot drift from the package. Writes two PNG files to the current folder.
"""

# [setup]
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
# [/setup]

# [search]
classes = [0, 3, 7]
# One canvas per class: the search image the model is most confident about.
canvases = select_canvases(model, data.search.images, data.search.labels, classes)
# All three maps are searched together, on images of the *other* classes.
maps = ClassPattern(model).attribute(
    canvases, target=classes, baselines=data.search.images, baseline_labels=data.search.labels, seed=0
)
print(maps.shape)  # torch.Size([3, 1, 32, 32]), shaped like the canvases, values in [0, 1]
# [/search]

# [measure]
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
# [/measure]

# [captum]
# The same measurement for a standard attribution of the same canvas.
saliency = captum_attribution(model, "IntegratedGradients", canvases[2], target=7)
power = predictive_power(model, top_k_pattern(saliency, canvases[2], k=0.05), images, labels, 7)
print(f"class 7, top 5% IntegratedGradients pixels: power {power:.2f}")
# [/captum]

# [draw]
fig, axes = plot_class_patterns(
    canvases, maps, patterns=patterns, class_names=[str(c) for c in classes], powers=powers, use_pyplot=False
)
fig.savefig("quickstart_patterns.png", dpi=110)
fig, ax = visualize_class_pattern(
    maps[2], canvases[2], method="blended_heat_map", use_pyplot=False, title="class 7: map over its canvas"
)
fig.savefig("quickstart_map.png", dpi=110)
# [/draw]
