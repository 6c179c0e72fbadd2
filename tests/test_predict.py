"""`wardrobe predict`: one line per file, in order; bad files named, the rest still classified."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from contract.preprocess import load_image_file, to_fashion_mnist, to_model_input
from contract.runtime import load_model
from wardrobe.cli import main

LINE = re.compile(r"^(?P<path>.+): (?P<label>[\w/ -]+) \((?P<confidence>[01]\.\d{3})(?P<unsure>, unsure)?\)  top-3: ")


def _photo(path, fmt):
    pixels = np.full((240, 320, 3), 235, dtype=np.uint8)
    pixels[60:200, 120:200] = (40, 40, 40)
    Image.fromarray(pixels).save(path, fmt)
    return path


def test_each_file_gets_a_labelled_line_in_order(tiny_model_path, tmp_path, capsys):
    files = [_photo(tmp_path / "b.png", "PNG"), _photo(tmp_path / "a.jpg", "JPEG")]
    code = main(["predict", *map(str, files), "--model", str(tiny_model_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [LINE.match(line)["path"] for line in out] == [str(f) for f in files]
    # each line states the model's own top-3 for that file, labels from the model's metadata
    classifier = load_model(tiny_model_path)
    for line, path in zip(out, files, strict=True):
        [p] = classifier.probabilities(to_model_input([to_fashion_mnist(load_image_file(path))]))
        top = np.argsort(-p, kind="stable")[:3]
        shown = [round(float(x), 4) for x in p]  # answers carry 4 decimals (the HTTP contract); lines show 3
        ranked = ", ".join(f"{classifier.classes[i]} {shown[i]:.3f}" for i in top)
        unsure = ", unsure" if p[top[0]] < classifier.info.unsure_threshold else ""
        assert line == f"{path}: {classifier.classes[top[0]]} ({shown[top[0]]:.3f}{unsure})  top-3: {ranked}"


def test_a_bad_file_is_named_and_fails_the_command_but_not_the_others(tiny_model_path, tmp_path, capsys):
    good = _photo(tmp_path / "good.webp", "WEBP")
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    missing = tmp_path / "missing.jpg"
    code = main(["predict", str(bad), str(good), str(missing), "--model", str(tiny_model_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert [LINE.match(line)["path"] for line in captured.out.splitlines()] == [str(good)]
    assert f"{bad}: error: unsupported file type: text" in captured.err
    assert f"{missing}: error: cannot read file" in captured.err
    assert "2 of 3 file(s) could not be classified" in captured.err
    assert "Traceback" not in captured.err


def test_top_k_sets_the_number_of_alternatives(tiny_model_path, tmp_path, capsys):
    photo = _photo(tmp_path / "shoe.bmp", "BMP")
    assert main(["predict", str(photo), "--model", str(tiny_model_path), "--top-k", "5"]) == 0
    assert "top-5: " in capsys.readouterr().out


def test_a_missing_model_is_one_error_line(tmp_path, capsys):
    photo = _photo(tmp_path / "shoe.png", "PNG")
    code = main(["predict", str(photo), "--model", str(tmp_path / "none.onnx")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == f"wardrobe predict: error: {tmp_path / 'none.onnx'}: model file not found"


def test_unsure_answers_say_so_on_their_line(tiny_model_path, tmp_path, capsys):
    import onnx

    from contract import metadata as meta

    proto = onnx.load(tiny_model_path)
    meta.write_metadata(proto, {meta.UNSURE_THRESHOLD: "1.0"})  # nothing is sure enough
    onnx.save(proto, tmp_path / "strict.onnx")
    photo = _photo(tmp_path / "a.png", "PNG")
    assert main(["predict", str(photo), "--model", str(tmp_path / "strict.onnx")]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert LINE.match(line)["unsure"] == ", unsure"
