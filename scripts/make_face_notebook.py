#!/usr/bin/env python
"""Write notebooks/face_privacy.ipynb (TR-4928 scenario 1) from the cells below, unexecuted."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# Confidential face detection in a notebook (TR-4928, scenario 1)

The seed's JupyterLab notebook, with veil's open parts: a FaceBoxes detector split after its
rapidly digested layers, and learned Laplace noise on the activation at the split
(`veil.privacy.Obfuscator`). **STEP 3-1** detects faces on the clean activation; **STEP 3-2** adds
the single extra line, `forward_noise`, so only the obfuscated activation would leave the trusted
zone. Then both are scored on every fold, in the seed's log format.

Data: `DATA` is an FDDB-layout folder (for example a veil volume's path). If it does not exist,
a small synthetic set is generated there."""),
    ("code", """import os
import tempfile
from pathlib import Path

DATA = Path(os.environ.get("VEIL_FACES_DATA",
                           Path(tempfile.gettempdir()) / "veil-faces-notebook"))
ALPHA = float(os.environ.get("VEIL_FACES_ALPHA", "0.8"))
THRESHOLD = 0.5  # score above which a box is drawn"""),
    ("code", """import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw

from veil.privacy import Obfuscator, SplitModel
from veil.solutions import face_privacy as fp
from veil.solutions.face_privacy import _faceboxes

torch.manual_seed(0)
if not (DATA / "FDDB-folds").exists():
    fp.generate(DATA, seed=0, images_per_fold=3, fit_per_fold=4)
dataset = fp.read_fddb(DATA)
image = dataset.folds[0].images[0]
input_image = fp.load_image(image)
input_image_height, input_image_width = input_image.shape[:2]
clean_model = fp.load_model()  # FaceBoxes, split after the rapidly digested conv layers
priors = _faceboxes.priors(fp.INPUT, fp.INPUT)
print(f"{len(dataset.folds)} folds, {sum(len(f.images) for f in dataset.folds)} images; "
      f"first image {input_image_width} x {input_image_height}, "
      f"{len(image.ellipses)} faces")"""),
    ("code", """def preprocess_input(frame):
    return fp.to_input(frame)[None]  # (1, 3, 1024, 1024) in [0, 1]


def postprocess_outputs(loc, conf, threshold):
    boxes, scores = _faceboxes.detect(loc, conf, priors, fp.INPUT, fp.INPUT)[0]
    scale = torch.tensor([input_image_width, input_image_height] * 2) / fp.INPUT
    return [(*(b * scale).tolist(), float(s))
            for b, s in zip(boxes, scores, strict=True) if s >= threshold]


def draw(frame, outputs, colour=(255, 0, 0)):
    im = Image.fromarray(frame.copy())
    d = ImageDraw.Draw(im)
    for (x1, y1, x2, y2, _score) in outputs:
        d.rectangle((x1, y1, x2, y2), outline=colour, width=3)
    return np.asarray(im)"""),
    ("md", "### STEP 3-1: Clean (without obfuscation) detection"),
    ("code", """frame = input_image
preprocessed_input = preprocess_input(frame)

with torch.no_grad():
    clean_activation = clean_model.forward_head(preprocessed_input)  # runs the first layers
    loc, pred = clean_model.forward_tail(clean_activation)  # runs the rest

clean_outputs = postprocess_outputs(loc, pred, THRESHOLD)
clean_frame = draw(frame, clean_outputs)
print("activation sent to the tail:", tuple(clean_activation.shape))
print(f"{len(clean_outputs)} faces found, {len(image.ellipses)} annotated")
plt.figure(figsize=(6, 5))
plt.imshow(clean_frame)
plt.axis("off")
plt.title("clean detections");"""),
    ("md", """### Fitting the noise

The noise is fitted once, on the data set's `fit/` images (never the evaluated folds), with the
detector frozen: the largest noise per channel that keeps the detection loss low, at the privacy
level ALPHA."""),
    ("code", """obfuscator = Obfuscator(alpha=ALPHA, epochs=2, random_state=0).fit(
    clean_model, fp.loader(DATA, "fit", batch_size=4, shuffle=True), fp.task_loss)
noisy_model = SplitModel(clean_model.head, clean_model.tail, name=clean_model.name,
                         obfuscator=obfuscator.transform)
obfuscator"""),
    ("md", "### STEP 3-2: With obfuscation"),
    ("code", """with torch.no_grad():
    not_noisy_activation = noisy_model.forward_head(preprocessed_input)
    #####
    # SINGLE ADDITIONAL LINE FOR PRIVATE INFERENCE #
    #####
    noisy_activation = noisy_model.forward_noise(not_noisy_activation)
    #####
    loc, pred = noisy_model.forward_tail(noisy_activation)

noisy_outputs = postprocess_outputs(loc, pred, THRESHOLD)
noisy_frame = draw(frame, noisy_outputs)
print(f"{len(noisy_outputs)} faces found on the obfuscated activation")
fig, ax = plt.subplots(1, 3, figsize=(15, 4))
ax[0].imshow(clean_frame)
ax[0].set_title("clean detections")
ax[1].imshow(noisy_frame)
ax[1].set_title(f"obfuscated (ALPHA {ALPHA:g}) detections")
ax[2].imshow(noisy_activation[0].mean(0), cmap="gray")
ax[2].set_title("what leaves the trusted zone (mean over channels)")
for a in ax:
    a.axis("off")"""),
    ("md", "### Every fold, clean and obfuscated (the seed's batch log)"),
    ("code", """clean_eval = fp.evaluate(clean_model, dataset)
noisy_eval = fp.evaluate(clean_model, dataset, obfuscator.transform, alpha=ALPHA)
print("\\n".join(fp.log_lines(clean_eval)))
print("\\n".join(fp.log_lines(noisy_eval)))
print(f"obfuscated mAP is {noisy_eval.map / clean_eval.map:.1%} of clean at ALPHA {ALPHA:g}")"""),
]


def main() -> None:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                             for kind, src in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    out = Path(__file__).resolve().parents[1] / "notebooks" / "face_privacy.ipynb"
    nbformat.write(nb, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
