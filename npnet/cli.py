"""Command line: ``npnet train CONFIG.yaml`` runs an experiment; ``npnet compare RUN...`` draws
figures comparing runs; ``npnet summary MODEL`` prints a model's layers.

``main(argv)`` returns the exit status: 0 ok, 1 failed run (non-finite loss), 2 bad arguments or
config, 130 stopped by Ctrl-C (the run folder holds a resumable ``last.npz``)."""
import argparse
import sys

from .train.config import ConfigError, describe_schema, load_config


def _parser():
    p = argparse.ArgumentParser(prog="npnet", description="npnet experiments")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate as a YAML config says",
                       epilog="config keys:\n" + describe_schema(verbose=True),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="YAML file (see configs/)")
    t.add_argument("--out", default="runs", help="base folder of the run folders (default: runs)")
    t.add_argument("--epochs", type=int, help="override train.epochs (for quick runs)")
    t.add_argument("--name", help="override the run name (default: the config file's stem)")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (last.npz)")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no messages")
    c = sub.add_parser("compare", help="figures comparing finished runs (learning curves, "
                                        "per-class accuracy)")
    c.add_argument("runs", nargs="+", help="run folders (with history.json and metrics.json)")
    c.add_argument("--out", default=".", help="folder for the figures (default: .)")
    s = sub.add_parser("summary", help="print a model's layers, output shapes and parameters")
    s.add_argument("model")
    s.add_argument("--in-shape", default="3,32,32", help="C,H,W (default 3,32,32)")
    s.add_argument("--num-classes", type=int, default=10)
    return p


def _train(args):
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as e:
        print(f"npnet train: {e}", file=sys.stderr)
        return 2
    if args.epochs is not None:
        if args.epochs < 1:
            print(f"npnet train: --epochs must be >= 1, got {args.epochs}", file=sys.stderr)
            return 2
        config["train"]["epochs"] = args.epochs
    if args.name:
        config["name"] = args.name
    from .train.experiment import run_experiment
    log = (lambda *a, **k: None) if args.quiet else print
    _, status = run_experiment(config, args.out, resume=args.resume,
                               progress=False if args.quiet else None, log=log)
    return status


def _summary(args):
    from .models import build_model, summary
    try:
        shape = tuple(int(v) for v in args.in_shape.split(","))
        model = build_model(args.model, shape, args.num_classes)
    except (ValueError, TypeError) as e:
        print(f"npnet summary: {e}", file=sys.stderr)
        return 2
    print(summary(model, shape))
    return 0


def _read_json(path):
    import json
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _compare(args):
    import os

    from . import plots
    labels = [os.path.basename(os.path.normpath(r)) for r in args.runs]
    try:
        histories = {k: _read_json(os.path.join(r, "history.json")) for k, r in zip(labels, args.runs)}
        results = {k: _read_json(os.path.join(r, "metrics.json")) for k, r in zip(labels, args.runs)}
    except (OSError, ValueError) as e:
        print(f"npnet compare: {e}", file=sys.stderr)
        return 2
    plots.plot_learning_curves(histories, path=os.path.join(args.out, "compare_learning_curves.png"))
    names = list(next(iter(results.values()))["per_class_accuracy"])
    per_class = {k: list(m["per_class_accuracy"].values()) for k, m in results.items()}
    plots.plot_per_class_accuracy(per_class, names,
                                  os.path.join(args.out, "compare_per_class_accuracy.png"))
    for k, m in results.items():
        print(f"{k}: test accuracy {m['test_accuracy']:.4f}, balanced {m['balanced_accuracy']:.4f}")
    return 0


def main(argv=None):
    """Entry point of the ``npnet`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    return {"train": _train, "compare": _compare, "summary": _summary}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
