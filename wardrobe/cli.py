"""The `wardrobe` console script: one sub-command per job, each a thin call into its module.

Heavy imports happen inside the sub-command so `wardrobe --help` is instant.
Expected failures (bad input, missing files) print one line naming the problem;
set WARDROBE_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_data(args: argparse.Namespace) -> int:
    from training.data_summary import print_summary

    print_summary(args.data_dir, download=args.download, quiet=args.quiet, seed=args.seed)
    return 0


def next_step(*commands: str) -> None:
    """End a long command with what to run next, in the README's order."""
    print("next:\n" + "\n".join(f"    {command}" for command in commands))


def gate_then_serve(model: str, wardrobe: str, published: str | None = None) -> list[str]:
    """After a fine-tune: the report's gate on the person's held-out items, then the registry
    (README, 'Learning from your wardrobe', steps 4 and 5; the promotion runs the canary)."""
    stem = Path(model).stem
    gate = (f"wardrobe report --model {model} --compare <the model you serve> --wardrobe {wardrobe} "
            f"--out reports/{stem}/ --fail-under wardrobe_gain=0")  # fmt: skip
    if published:
        return [gate, f"wardrobe models promote {published[:12]}"]
    return [gate, f"wardrobe models publish {model}", "wardrobe models promote <the SHA-256 it prints>"]


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import ConfigError, load_config

    if args.config is None and args.resume is None:
        raise ConfigError("train needs --config configs/<name>.toml (or --resume RUN_DIR to continue a run)")
    # A resumed run keeps its own config.json (training.train.run_from_cli); a new one may fine-tune.
    cfg = load_config(args.config, args.set) if args.resume is None else None
    if cfg is not None and cfg.is_finetune:
        from training.finetune import run_from_cli as finetune

        run_dir = finetune(args.config, args.set, data_dir=args.data_dir)
        model = "~/wardrobe/new.onnx"
        next_step(f"wardrobe export {run_dir} --out {model}", *gate_then_serve(model, cfg.data.wardrobe))
        return 0
    from training.train import run_from_cli

    run_dir = run_from_cli(args.config, args.set, resume=args.resume, data_dir=args.data_dir)
    name = json.loads((run_dir / "config.json").read_text())["config"]["name"]
    next_step(f"wardrobe export {run_dir} --out {name}.onnx   # models/ holds the shipped models: keep yours elsewhere")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import onnx

    from contract import metadata as meta
    from training.export import export_from_cli

    result = export_from_cli(args.source, args.out, data_dir=args.data_dir)
    if args.quantize == "int8":
        from training.quantize import quantize_from_cli

        quantize_from_cli(result, data_dir=args.data_dir)
    exported = meta.read_metadata(onnx.load(str(result.path), load_external_data=False))
    wardrobe = json.loads(exported.get(meta.CONFIG, "{}")).get("data", {}).get("wardrobe")
    published = None
    if args.publish:
        from service.registry_cli import open_registry, publish_file

        with open_registry() as registry:
            record = publish_file(registry, result.path, hint=False)
        published = record.sha256 if record.state == "candidate" else None
    if wardrobe:  # fine-tuned: gate on the person's held-out items, then promote through the canary
        next_step(*gate_then_serve(str(args.out), wardrobe, published))
        return 0
    report = f"wardrobe report --model {args.out} --compare models/cnn.onnx --out reports/{args.out.stem}/"
    next_step(report, *([f"wardrobe models promote {published[:12]}"] if published else []))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from service.registry_cli import run

    if args.action == "export":
        from service.model_export import run_export

        if not args.target or args.out is None:
            raise ValueError("models export needs a SHA256 (or 'champion') and --out FILE")
        return run_export(args.target, args.out)
    if args.out is not None:
        raise ValueError(f"models {args.action}: --out goes with export only")
    if args.action in ("publish", "promote") and not args.target:
        raise ValueError(f"models {args.action} needs {'a model FILE' if args.action == 'publish' else 'a SHA256'}")
    if (args.force or args.reason is not None) and args.action != "promote":
        raise ValueError(f"models {args.action}: --force and --reason go with promote only")
    if args.force and not (args.reason or "").strip():
        raise ValueError("models promote --force needs --reason 'why' (recorded in the registry with who forced it)")
    if args.reason is not None and not args.force:
        raise ValueError("models promote --reason goes with --force")
    return run(args.action, args.target, as_json=args.json, force=args.reason if args.force else None)


def cmd_report(args: argparse.Namespace) -> int:
    import tempfile

    from report.cli import run_report
    from service.model_export import compare_model

    if args.compare is None:
        return run_report(args)
    with tempfile.TemporaryDirectory(prefix="wardrobe-compare-") as folder:
        args.compare = compare_model(args.compare, Path(folder))  # a file, or the registry's model it names
        return run_report(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    return serve(model=args.model, port=args.port, host=args.host)


def cmd_predict(args: argparse.Namespace) -> int:
    from service.predict import predict_files

    return predict_files(args.images, model=args.model, top_k=args.top_k)


def cmd_demo(args: argparse.Namespace) -> int:
    from service.serve import demo

    return demo(port=args.port)


def _key_values(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A repeatable KEY=VALUE option (--set, --fail-under), collected into a list."""
    parser.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardrobe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="locate, verify and summarise Fashion-MNIST")
    p.add_argument("--data-dir", type=Path, help="directory with the four .gz files")
    dl = p.add_mutually_exclusive_group()
    dl.add_argument(
        "--download",
        dest="download",
        action="store_true",
        default=True,
        help="download into the user cache if not found (default)",
    )
    dl.add_argument("--no-download", dest="download", action="store_false", help="fail instead of downloading")
    p.add_argument("--seed", type=int, default=0, help="split seed to summarise (default 0)")
    p.add_argument("--quiet", action="store_true", help="only verify, print one line")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model from a TOML config")
    p.add_argument("--config", type=Path, help="configs/<name>.toml (not needed with --resume)")
    _key_values(p, "--set", "override a config value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in this directory on its own config.json; --set may change only threads and "
        "data.data_dir there",
    )
    p.add_argument("--data-dir", type=Path, help="directory with the four .gz files")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a run or checkpoint to ONNX")
    p.add_argument("source", type=Path, metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument(
        "--out", type=Path, required=True, help="<name>.onnx: anywhere but models/, which holds the shipped models"
    )
    p.add_argument("--quantize", choices=["int8"], help="also quantize (static, calibrated)")
    p.add_argument("--publish", action="store_true", help="publish the model to the registry in WARDROBE_DB")
    p.add_argument("--data-dir", type=Path, help="directory with the four .gz files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write the evaluation report of a model")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument(
        "--compare",
        metavar="FILE|champion|SHA256",
        help="a second model to compare against: a file, or one of the registry's in WARDROBE_DB",
    )
    p.add_argument("--run", type=Path, help="the training run directory (learning curves)")
    p.add_argument(
        "--wardrobe",
        metavar="SOURCE",
        help="a wardrobe (export zip, image folder or database URL): adds the 'Your wardrobe' section",
    )
    p.add_argument("--out", type=Path, required=True, help="reports/<name>/")
    _key_values(p, "--fail-under", "exit non-zero if a metric misses this threshold (repeatable)")
    p.add_argument("--data-dir", type=Path, help="directory with the four .gz files")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="start the HTTP service")
    p.add_argument("--model", type=Path, help="ONNX model (default: the shipped CNN)")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("predict", help="classify local image files (no server)")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--model", type=Path, help="ONNX model (default: the shipped CNN)")
    p.add_argument("--top-k", type=int, default=3)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="the model registry in WARDROBE_DB: publish, list, promote, rollback, export")
    p.add_argument("action", choices=["publish", "list", "promote", "rollback", "export"])
    p.add_argument(
        "target",
        nargs="?",
        metavar="FILE|SHA256",
        help="publish: the .onnx file; promote: its SHA-256; export: its SHA-256 or 'champion'",
    )
    p.add_argument("--out", type=Path, help="export: the file to write (atomically)")
    p.add_argument("--json", action="store_true", help="list: print the registry as JSON")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote: override the canary and the guard (a worse or barely judged model); needs --reason",
    )
    p.add_argument("--reason", help="promote --force: why, recorded in the registry with who forced it")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="start the service on the shipped model and show a curl line")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("wardrobe: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("WARDROBE_DEBUG"):
            raise
        print(f"wardrobe {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
