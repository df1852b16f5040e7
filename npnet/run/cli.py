"""The ``npnet`` command: ``train`` runs an experiment from a YAML config, ``sweep`` a grid of
them, ``compare`` draws figures comparing runs, ``summary`` prints a model's layers, ``evaluate``
and ``predict`` use a trained run's model (``trained.py``), ``sample`` a language model's (``sample.py``),
``export`` writes a run's model as an ONNX file (``export.py``).

``train --nproc N`` runs one experiment on N local processes (MPI; ``launch.py``); under
``mpiexec`` or ``srun`` each rank finds its place from MPI (``ranks.py``).

``main(argv)`` returns the exit status: 0 ok, 1 a diverged run (non-finite loss) or a sweep
with trials that failed, 2 bad arguments, config, data or checkpoint (nothing written), 130
stopped by Ctrl-C, 143 by SIGTERM (a run folder then holds a resumable ``last.npz``; a second
signal aborts at once with the same status). Failures print one message that says
what was wrong and what to do, never a traceback (``--traceback`` shows one for bug reports).
"""
import argparse
import sys

from .config import ConfigError, describe_schema, finish_config, load_config
from .experiment import RunError


def _parser(zoo=None):
    """The argument parser; ``zoo``: the model names ``summary --help`` lists (None: not asked,
    so that no command pays for importing the zoo to build its parser)."""
    from .. import __version__
    p = argparse.ArgumentParser(prog="npnet", description="npnet experiments")
    p.add_argument("--version", action="version", version=f"npnet {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true",
                        help="on an unexpected error show the Python traceback (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)
    _train_parser(sub, common)
    _sweep_parser(sub, common)
    c = sub.add_parser("compare", parents=[common], help="figures comparing runs "
                       "(learning curves; per-class accuracy of the finished ones)")
    c.add_argument("runs", nargs="+", help="run folders of npnet train (with history.json; "
                   "metrics.json once finished)")
    c.add_argument("--out", default=".", help="folder for the figures (default: .)")
    s = sub.add_parser("summary", parents=[common],
                       help="print a model's layers, output shapes and parameters",
                       epilog=None if zoo is None else _zoo_epilog(zoo),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help="a name of the model zoo (listed below)")
    s.add_argument("--in-shape", default="3,32,32", help="C,H,W (default 3,32,32)")
    s.add_argument("--num-classes", type=int, default=10, help="outputs of the last layer, >= 1 "
                                                               "(default 10)")
    _use_parsers(sub, common)
    g = sub.add_parser("sample", parents=[common], help="text from a trained language model "
                       "(a run of char-lstm or char-transformer)")
    g.add_argument("run", help="the folder of a language model's run of npnet train (or one of its checkpoints)")
    g.add_argument("--prompt", default="\n", help="the text to continue (default: a new line)")
    g.add_argument("--length", type=int, default=300, help="characters to draw (default 300)")
    g.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature, >= 0; 0: the likeliest character every time (default 0.8)")
    g.add_argument("--seed", type=int, default=0, help="seeds the draws (default 0)")
    g.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best: best.npz when the run kept one, else last.npz (default); last: last.npz")
    return p


def _zoo_epilog(zoo):
    """"models: ..." wrapped between names (argparse's own wrapping would split char-lstm)."""
    import textwrap
    return ("--in-shape by model: C,H,W for an image model; T,F for a sequence model (*-rows); T "
            "for a\nlanguage model (char-*), whose --num-classes is the vocabulary size\n\n"
            + textwrap.fill("models: " + ", ".join(zoo), 78, break_on_hyphens=False))


def _use_parsers(sub, common):
    weights = {"choices": ("best", "last"), "default": "best",
               "help": "best: best.npz when the run kept one, else last.npz (default); last: last.npz"}
    run_help = "a run folder written by npnet train (runs/<name>-<time>) or one of its checkpoints"
    e = sub.add_parser("evaluate", parents=[common], help="a trained run's accuracy on a test set")
    e.add_argument("run", help=run_help)
    e.add_argument("--dataset", help="whose whole test split to use (default: the run's own dataset); one of "
                                     "the same image size, e.g. fashion-mnist for a fashion-mnist-mini run")
    e.add_argument("--weights", **weights)
    p = sub.add_parser("predict", parents=[common],
                       help="a trained run's classes and probabilities for images in files",
                       description="Prints, for every image, the predicted class and the top "
                       "probabilities. FILES: .npy arrays ((N, C, H, W), (N, H, W) or one image), "
                       ".png images, Fashion-MNIST IDX image files (*-images-idx3-ubyte[.gz]) or "
                       "CIFAR-10 batches (data_batch_N, test_batch, *.bin), of the run's image size.")
    p.add_argument("run", help=run_help)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--top", type=int, default=3, help="probabilities shown per image (default 3)")
    p.add_argument("--weights", **weights)
    x = sub.add_parser("export", parents=[common], help="a trained run's model as an ONNX file "
                       "(pip install -e '.[onnx]')",
                       description="Writes the run's model in eval mode (BatchNorm's running "
                       "statistics, no dropout) as one file that ONNX Runtime and other tools run. Its "
                       "input is the model's: images after the run's normalisation (the file's "
                       "metadata npnet.input says which), or token ids for a language model.")
    x.add_argument("run", help=run_help)
    x.add_argument("--format", choices=("onnx",), default="onnx", help="the file format (default onnx)")
    x.add_argument("--out", help="the file to write, or a folder for model.onnx (default: model.onnx "
                                 "in the run folder, or the checkpoint's name with .onnx beside it)")
    x.add_argument("--batch", type=int, metavar="N",
                   help="a fixed batch size N in the file (default: any batch size)")
    x.add_argument("--weights", **weights)


def _train_parser(sub, common):
    t = sub.add_parser(
        "train", parents=[common], help="train and evaluate as a YAML config says",
        epilog="config keys (any of them can be set with --set KEY=VALUE):\n"
               + describe_schema(verbose=True)
               + "\n\nspeed: the speed section runs npnet.fuse(model) and npnet.tune(model, batch) before "
                 "training (--set speed.tune=false keeps the fixed im2col/Winograd rule, the same on every machine; "
                 "speed.algorithms=im2col,winograd leaves out F(4x4), fast on wide layers, which rounds ~10x more coarsely); what they "
                 "did is printed and written to metrics.json. environment: NPNET_NUMBA_CACHE=0 "
                 "recompiles the kernels",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", nargs="?", help="YAML file (see configs/); optional with --resume, "
                                             "which continues the checkpoint's own config")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, dotted, value read as YAML, e.g. "
                        "--set data.dataset=fashion-mnist-mini (repeatable)")
    t.add_argument("--out", help="base folder of the run folders (default: runs)")
    t.add_argument("--epochs", type=int, help="override train.epochs (with --resume: the total "
                                              "to reach)")
    t.add_argument("--name", help="override the run name (default: the config file's stem)")
    t.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its checkpoint (last.npz), in its own folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no messages")
    t.add_argument("--nproc", type=int, metavar="N",
                   help="train on N local processes (data-parallel over MPI, the same run as on "
                        "one; pip install -e '.[mpi]'), each with cores / N threads")


def _sweep_parser(sub, common):
    w = sub.add_parser(
        "sweep", parents=[common], help="run every trial of a sweep file (a grid of config "
        "keys) on local processes or a Ray cluster",
        description="A sweep file names a base config (base: FILE.yaml or an inline config:), a "
        "grid: of dotted config keys to lists of values (every combination is a trial), "
        "optional seeds: [...] and set: overrides; see configs/sweeps/. Writes OUT/<name>/ "
        "with trials.csv, summary.md, figures and one run folder per trial; running it again "
        "skips finished trials and resumes interrupted ones.")
    w.add_argument("sweep", help="YAML sweep file (see configs/sweeps/)")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every trial (not a swept key); repeatable")
    w.add_argument("--workers", type=int, help="trials at a time (default: cores / threads)")
    w.add_argument("--threads-per-trial", type=int, metavar="T",
                   help="Numba and BLAS threads (Ray: CPUs) of each trial (default: the cores "
                        "shared out among the workers)")
    w.add_argument("--backend", choices=("local", "ray"),
                   help="local processes (default) or Ray tasks (pip install -e '.[ray]')")
    w.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT "
                                      "(implies --backend ray; without it Ray starts locally)")
    w.add_argument("--asha", type=int, metavar="GRACE_EPOCHS",
                   help="Ray only: stop hopeless trials early (ASHA on validation accuracy, "
                        "after at least GRACE_EPOCHS epochs); off by default")
    w.add_argument("--out", default="sweeps", help="base folder (default: sweeps)")
    w.add_argument("--quiet", action="store_true", help="no progress bar and no messages")


def _check_out(out):
    """``RunError`` (exit 2, nothing written) when no files can be written in the folder ``out``."""
    from .._io import check_writable_folder
    try:
        check_writable_folder(out)
    except ValueError as e:
        raise RunError(f"--out {out}: {e}; give a folder you can write in (made if missing)") from None


def _shares(args, n_trials, backend):
    """(workers, threads per trial): by default the machine's cores, filled."""
    from .threads import available_cores
    for name in ("workers", "threads_per_trial"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RunError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    cores = available_cores()
    workers, threads = args.workers, args.threads_per_trial
    here = backend == "local" or not args.address  # trials on this machine's cores
    if workers is None and threads is None and here:
        workers = max(1, min(n_trials, cores))
    if threads is None:
        threads = max(1, cores // workers) if here else 1
    if workers is None:  # on a cluster, as many at a time as its free CPUs allow
        workers = max(1, cores // threads) if here else n_trials
    return workers, threads


def _sweep(args):
    from .sweep_spec import load_sweep
    from .threads import available_cores
    from .sweep_run import run_sweep
    backend = args.backend or ("ray" if args.address else "local")
    if backend == "local" and (args.address or args.asha is not None):
        raise RunError("--address and --asha need --backend ray")
    if args.asha is not None and args.asha < 1:
        raise RunError(f"--asha GRACE_EPOCHS must be >= 1, got {args.asha}")
    sweep = load_sweep(args.sweep, args.set)
    _check_out(args.out)
    workers, threads = _shares(args, len(sweep.trials), backend)
    log = (lambda *a, **k: None) if args.quiet else print
    if (backend == "local" or not args.address) and workers * threads > available_cores():
        log(f"note: {workers} workers x {threads} threads > {available_cores()} cores: the "
            "trials will slow each other down")
    asha = None if args.asha is None else {"grace_period": args.asha}
    return run_sweep(sweep, args.out, backend, workers, threads, args.address, asha,
                     progress=False if args.quiet else None, log=log)


def _train(args):
    from .ranks import join_world, rank_progress, run_replica
    from .runner import run_experiment
    rank = None if args.nproc is not None else join_world()  # None: not under MPI
    config = _train_config(args)
    if not rank and args.resume is None:  # resuming: the checkpoint's folder (rank 0 writes)
        _check_out(args.out or "runs")
    if args.nproc is not None and args.nproc != 1:
        from .launch import check_launch, launch
        check_launch(args.nproc, config)
        return launch(args)
    if rank:
        return run_replica(config, args.resume)
    log = (lambda *a, **k: None) if args.quiet else print
    progress = False if args.quiet else rank_progress(None)
    result = run_experiment(config, args.out or "runs", resume=args.resume, progress=progress,
                            log=log)
    return result["exit_code"]


def _train_config(args):
    """The validated config of ``npnet train`` from CONFIG, --set, --epochs, --name and --resume;
    ConfigError / RunError before anything is written."""
    from .runner import resume_config
    if args.config is None and args.resume is None:
        raise RunError("give a CONFIG file (see configs/), or --resume CHECKPOINT to continue a run")
    if args.epochs is not None and args.epochs < 1:
        raise RunError(f"--epochs must be >= 1, got {args.epochs}")
    if args.resume is not None:
        if args.name or args.out:
            raise RunError("--name and --out do not apply with --resume: a resumed run continues "
                           "in the folder of its checkpoint")
        given = None
        if args.config is not None:
            given = load_config(args.config, args.set)
        elif args.set:
            from .runner import checkpoint_config
            given = finish_config(checkpoint_config(args.resume)[0], args.set, args.resume)
        config = resume_config(args.resume, given, args.epochs)
    else:
        config = load_config(args.config, args.set)
        if args.epochs is not None:
            config["train"]["epochs"] = args.epochs
        if args.name:
            config["name"] = args.name
    return config


def _summary(args):
    from ..models import build_model, summary
    if args.num_classes < 1:
        raise RunError(f"--num-classes must be >= 1, got {args.num_classes}")
    try:
        shape = tuple(int(v) for v in args.in_shape.split(","))
        model = build_model(args.model, shape, args.num_classes)
    except (ValueError, TypeError) as e:
        raise RunError(str(e)) from None
    print(summary(model, shape))
    return 0


def _read_json(path):
    import json
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _compare(args):
    """Learning curves of every run given, per-class accuracy of those that finished; an
    interrupted or diverged run has history.json but no metrics.json, and still gets its curves."""
    import os

    from .. import plots
    _check_out(args.out)
    histories, results = {}, {}
    for label, run in zip(_run_labels(args.runs), args.runs):
        try:
            histories[label] = _read_json(os.path.join(run, "history.json"))
            if os.path.exists(os.path.join(run, "metrics.json")):
                results[label] = _read_json(os.path.join(run, "metrics.json"))
        except (OSError, ValueError) as e:
            raise RunError(f"{e}; give run folders of npnet train (each holds history.json, and "
                           "metrics.json once it finished)") from None
    written = [os.path.join(args.out, "compare_learning_curves.png")]
    plots.plot_learning_curves(histories, path=written[0])
    if results:
        names = list(next(iter(results.values()))["per_class_accuracy"])
        per_class = {k: list(m["per_class_accuracy"].values()) for k, m in results.items()}
        written.append(os.path.join(args.out, "compare_per_class_accuracy.png"))
        plots.plot_per_class_accuracy(per_class, names, written[1])
    for k in histories:
        m = results.get(k)
        print(f"{k}: test accuracy {m['test_accuracy']:.4f}, balanced {m['balanced_accuracy']:.4f}"
              if m else f"{k}: no metrics.json (the run did not finish): learning curves only")
    print("figures: " + ", ".join(written))
    return 0


def _run_labels(runs):
    """Each run folder's name, or its whole path where two folders share a name."""
    import os
    names = [os.path.basename(os.path.normpath(r)) for r in runs]
    return [os.path.normpath(r) if names.count(n) > 1 else n for r, n in zip(runs, names)]


def _load_run(args, language=False):
    """The run of ``args.run``; ``language``: a language model's is wanted (else an image model's)."""
    from .trained import load_run
    try:
        run = load_run(args.run, args.weights)
    except (OSError, ValueError) as e:
        raise RunError(str(e)) from None
    if language != hasattr(run, "vocab"):
        raise RunError(f"{args.run}: a run of {run.config['network']['model']}, " +
                       ("not a language model: use npnet predict or evaluate" if language else
                        "a language model: use npnet sample"))
    return run


def _sample(args):
    run = _load_run(args, language=True)
    try:
        print(run.sample(args.prompt, args.length, args.temperature, args.seed))
    except ValueError as e:
        raise RunError(str(e)) from None
    return 0


def _evaluate(args):
    from .. import metrics
    from .experiment import load_data
    from .trained import IMAGE_SHAPES
    run = _load_run(args)
    dataset = args.dataset or run.config["data"]["dataset"]
    if dataset not in IMAGE_SHAPES:
        raise RunError(f"--dataset {dataset!r}: expected one of {', '.join(IMAGE_SHAPES)}")
    if IMAGE_SHAPES[dataset] != run.image_shape:
        raise RunError(f"--dataset {dataset}: its images are {IMAGE_SHAPES[dataset]}, the run's "
                       f"model takes {run.image_shape}; give a dataset of the run's image size")
    config = dict(run.config, data=dict(run.config["data"], dataset=dataset))
    _, _, x, y = load_data(config)
    logits = run.logits(x, run.config["train"]["eval_batch_size"])
    k = len(run.classes)
    print(f"{run}\n{dataset} test set, {len(y)} images: accuracy {metrics.accuracy(y, logits):.4f}, "
          f"balanced accuracy {metrics.balanced_accuracy(y, logits, k):.4f}")
    return 0


def _predict(args):
    import numpy as np

    from .trained import read_images
    if args.top < 1:
        raise RunError(f"--top must be >= 1, got {args.top}")
    run = _load_run(args)
    top = min(args.top, len(run.classes))
    for path in args.files:
        try:
            images = read_images(path, channels=run.image_shape[0])
            probs = run.predict(images, run.config["train"]["eval_batch_size"])
        except OSError as e:
            raise RunError(f"{path}: cannot read the file ({e.strerror or e})") from None
        except (ValueError, TypeError) as e:
            raise RunError(f"{path}: {e}" if path not in str(e) else str(e)) from None
        for i, p in enumerate(probs):
            best = np.argsort(-p, kind="stable")[:top]
            where = path if len(probs) == 1 else f"{path}[{i}]"
            print(f"{where}: {run.classes[best[0]]}  ("
                  + ", ".join(f"{run.classes[c]} {p[c]:.3f}" for c in best) + ")")
    return 0


def _export(args):
    from ..onnx import ExportError
    from .export import export_run
    try:
        out, run = export_run(args.run, args.format, args.out, args.batch, args.weights)
    except ExportError as e:
        raise RunError(f"{args.run}: {e}") from None
    except (OSError, ValueError, ImportError) as e:
        raise RunError(str(e)) from None
    print(f"{run}\nwrote {out}")
    return 0


COMMANDS = {"train": _train, "sweep": _sweep, "compare": _compare, "summary": _summary,
            "evaluate": _evaluate, "predict": _predict, "sample": _sample,
            "export": _export}


def main(argv=None):
    """Entry point of the ``npnet`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    zoo = None
    if argv[:1] == ["summary"] and {"-h", "--help"} & set(argv):
        from ..models import MODELS
        zoo = list(MODELS)
    args = _parser(zoo).parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, RunError) as e:
        return _failed(2, f"npnet {args.command}: {e}")
    except KeyboardInterrupt as e:  # Ctrl-C, a second signal, SIGTERM outside training
        from ..train.progress import exit_status
        code = exit_status(e)
        what = "SIGTERM" if code == 143 else "Ctrl-C"
        return _failed(code, f"\nnpnet {args.command}: aborted by {what}", every_rank=True)
    except Exception as e:  # noqa: BLE001  a bug: one message, the traceback on request
        if args.traceback and _ranks() == 1:
            raise
        if args.traceback:
            import traceback
            traceback.print_exc()
        return _failed(2, f"npnet {args.command}: unexpected error: {type(e).__name__}: {e}\n"
                       "This is probably a bug in npnet; run the same command with --traceback "
                       "and report its output.")


def _ranks():
    """The MPI world size when this process is one rank of several (1 otherwise)."""
    world = sys.modules.get("npnet.distributed.world")  # never imported: not under MPI
    return 1 if world is None else world.world_size()


def _failed(code, message, every_rank=False):
    """Prints ``message`` and returns ``code``; as one rank of several, ends every rank with one
    message (``distributed.world.fail``; ``every_rank``: an event all ranks see, said once)."""
    if _ranks() > 1:
        sys.modules["npnet.distributed.world"].fail(code, message, quiet=every_rank)
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
