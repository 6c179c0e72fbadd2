"""`wardrobe predict IMAGE...`: classify files with the service's runtime and preprocessing."""

from __future__ import annotations

import sys
from pathlib import Path

from contract.preprocess import ImageError, load_image_file, to_fashion_mnist, to_model_input
from contract.runtime import load_model
from service.model_choice import choose_model
from service.settings import threads_from_env


def format_prediction(path: Path, answer: dict) -> str:
    """`path: Label (0.973)  top-3: Label 0.973, Other 0.020, …`, with ", unsure" after the
    confidence when the model is unsure."""
    ranked = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in answer["top_k"])
    unsure = ", unsure" if answer["unsure"] else ""
    return f"{path}: {answer['label']} ({answer['confidence']:.3f}{unsure})  top-{len(answer['top_k'])}: {ranked}"


def predict_files(paths: list[Path], model: Path | None = None, top_k: int = 3) -> int:
    """Print one line per file, in order; 1 if any file could not be classified, else 0.

    A bad file gets an error line naming it and does not stop the others.
    """
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    # Like the server: the model `choose_model` picks when none is named, WARDROBE_THREADS honoured.
    classifier = load_model(model or choose_model("auto").path, threads=threads_from_env())
    crops, errors = {}, {}
    for index, path in enumerate(paths):
        try:
            crops[index] = to_fashion_mnist(load_image_file(path))
        except ImageError as exc:
            errors[index] = f"{path}: error: {exc}"
    answers = {}
    if crops:
        probabilities = classifier.probabilities(to_model_input(list(crops.values())))
        answers = dict(zip(crops, classifier.answers(probabilities, top_k), strict=True))
    for index, path in enumerate(paths):
        if index in errors:
            sys.stdout.flush()  # keep the lines in file order when both streams share a terminal
            print(errors[index], file=sys.stderr, flush=True)
        else:
            print(format_prediction(path, answers[index]))
    if errors:
        print(
            f"wardrobe predict: {len(errors)} of {len(paths)} file(s) could not be classified",
            file=sys.stderr,
        )
    return 1 if errors else 0
