"""Photos of Fashion-MNIST garments in a style the shipped model has not seen: home snapshots.

`photo_sim/photolike.py` renders shop photos: a plain light backdrop, even light, the garment
well inside the frame. A person photographing their own clothes does it differently, and
this renders that: the garment lies on a bedsheet (a woven stripe or check texture, tinted),
lit by one lamp (light falls off across the frame and a soft shadow falls beside the
garment), framed tightly from a phone held at a slight angle (rotated, sometimes cut by an
edge), and saved as a phone JPEG. The service's preprocessing removes much of this, not all
of it: exactly the gap a person's corrections can teach the model to close.

Used by the fine-tuning tests and `benchmarks/finetune.py`; numpy and Pillow only. As a
command it writes a folder of such photos, one sub-folder per class, and with `--upload`
adds them to a running wardrobe and labels each with its true class, as a person who
corrected or confirmed every garment would (the README's walk-through):

    python -m benchmarks.unseen_style --out photos/ --n 150 [--seed 0] [--upload http://127.0.0.1:3000]

150 photos (15 per class) is about the fewest whose held-out quarter lets the swap's canary
tell a better model from a worse one; with a few dozen, one photo decides.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photo_sim.bedsheet import make_unseen_style, unseen_style_set

__all__ = ["make_unseen_style", "unseen_style_set", "upload_labelled", "write_folder"]


def write_folder(out: Path, n: int, seed: int, data_dir: Path | None = None) -> list[Path]:
    """`n` snapshots of Fashion-MNIST test garments (seeded, classes balanced) under out/<class>/."""
    from training.fashion_mnist import CLASSES, load

    data = load(data_dir)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.test_labels))
    per_class = -(-n // len(CLASSES))
    picks = [int(i) for c in range(len(CLASSES)) for i in order[data.test_labels[order] == c][:per_class]][:n]
    written = []
    for i, jpeg in zip(picks, unseen_style_set(data.test_images[picks], seed), strict=True):
        path = Path(out) / CLASSES[data.test_labels[i]].replace("/", "_") / f"test-{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)
        written.append(path)
    return written


def upload_labelled(paths: Sequence[Path], url: str, token: str, batch: int = 16) -> int:
    """POST the photos to the wardrobe at `url`, then PATCH each item's label to its folder's
    class; return how many were labelled. RuntimeError with the server's answer if one fails."""
    import httpx

    from training.fashion_mnist import CLASSES

    class_of_folder = {name.replace("/", "_"): name for name in CLASSES}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    labelled = 0
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=120) as client:
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            files = [("images", (path.name, path.read_bytes(), "image/jpeg")) for path in chunk]
            added = _checked(client.post("/wardrobe/items", files=files))
            for path, item in zip(chunk, added, strict=True):
                _checked(
                    client.patch(f"/wardrobe/items/{item['id']}", json={"label": class_of_folder[path.parent.name]})
                )
                labelled += 1
            print(f"uploaded and labelled {labelled}/{len(paths)}", flush=True)
    return labelled


def _checked(response):
    if response.is_error:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()


def _wardrobe_source() -> str:
    """What `data.wardrobe` should say for the server's WARDROBE_DB, as this shell sees it."""
    from contract.store.database import database_url

    url = database_url(os.environ.get("WARDROBE_DB"))
    return url.render_as_string(hide_password=False) if url.get_backend_name() == "sqlite" else "$WARDROBE_DB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write <class>/<file>.jpg into")
    parser.add_argument("--n", type=int, default=150, help="how many photos (default 150, 15 per class)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--upload", metavar="URL", help="add them to the wardrobe served there, each labelled "
                        "with its true class (token from WARDROBE_TOKEN)")  # fmt: skip
    args = parser.parse_args(argv)
    written = write_folder(args.out, args.n, args.seed, args.data_dir)
    print(f"wrote {len(written)} photos under {args.out}/")
    if args.upload:
        import httpx

        try:
            labelled = upload_labelled(written, args.upload, os.environ.get("WARDROBE_TOKEN", ""))
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"unseen_style: error: {exc}", file=sys.stderr)
            return 1
        print(f"{labelled} garments in the wardrobe at {args.upload}, each labelled with its true class.")
        print("Next: fine-tune on them (README.md, 'Learning from your wardrobe', step 3):")
        print(f"    wardrobe train --config configs/finetune.toml --set data.wardrobe={_wardrobe_source()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
