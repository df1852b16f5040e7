"""ResNet-32's first epoch on the embedded set, npnet against PyTorch: is the eval-mode
validation loss after epoch 1 (hundreds, accuracy at chance, issue 24) ours or BatchNorm's?

Both frameworks start from the same weights (npnet's, loaded into a PyTorch twin through the
state dict), see the same batches (npnet's DataLoader with crop + flip, computed once and fed to
both), and take the same SGD steps (lr 0.1, momentum 0.9, weight decay 1e-4, batch 128: the
settings of examples/resnet32.py). At a few steps and after the epoch the script prints, for each
framework, the validation loss and accuracy in eval mode (BatchNorm's running statistics), the
same with the statistics of the validation batch itself (train-mode BatchNorm, no update kept),
and how far the two models' weights and running statistics have drifted apart.

    python benchmarks/resnet32_first_epoch.py [--steps N] [--threads 2] [--float64]
"""
import argparse
import copy
import time

from _common import load_frameworks, pin_threads

BATCH, LR, MOMENTUM, WEIGHT_DECAY, SEED = 128, 0.1, 0.9, 1e-4, 0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="steps to train (default: one epoch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report", default="10,30,50", help="steps after which to evaluate too")
    p.add_argument("--float64", action="store_true",
                   help="both models and the data in float64: tells rounding from a real difference")
    return p.parse_args()


def batches(seed):
    """The embedded set split 9,000 / 1,000 as in examples/resnet32.py, its augmentations drawn from
    the same generator in the same order: the epoch's augmented, normalised training batches (a
    list of (x, y)) and the normalised validation set."""
    import numpy as np
    from npnet.data import (Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip,
                            load_dataset, train_val_split)
    data = load_dataset("fashion-mnist-mini")
    x_tr, y_tr, x_val, y_val = train_val_split(data.x_train, data.y_train, 0.1, seed=seed)
    norm = Normalize.for_dataset("fashion-mnist")
    rng = np.random.default_rng(seed)
    augment = Compose([RandomCrop(x_tr.shape[2:], padding=4, rng=rng), RandomHorizontalFlip(rng=rng)])
    first = x_tr[[np.flatnonzero(y_tr == c)[0] for c in range(6)]]
    for _ in range(3):  # the example draws its augmentation figure first: the same random numbers
        augment(first)
    loader = DataLoader(x_tr, y_tr, BATCH, shuffle=True, seed=seed, transform=Compose([augment, norm]))
    return [(x.copy(), y.copy()) for x, y in loader], norm(x_val), y_val


def evaluate_npnet(model, x, y):
    """(loss, accuracy) with running statistics (eval) and with the batch's own (train mode,
    running statistics restored afterwards)."""
    import numpy as np
    from npnet import losses, nn
    out = {}
    for mode in ("eval", "batch"):
        saved = copy.deepcopy(model.state_dict())
        model.train(mode == "batch")
        with nn.no_grad():
            logits = np.concatenate([model(x[i:i + 500]) for i in range(0, len(x), 500)])
        model.load_state_dict(saved)
        out[mode] = (losses.CrossEntropyLoss()(logits, y), float(np.mean(logits.argmax(1) == y)))
    model.train()
    return out


def evaluate_torch(torch, twin, x, y):
    out = {}
    for mode in ("eval", "batch"):
        saved = copy.deepcopy(twin.state_dict())
        twin.train(mode == "batch")
        with torch.no_grad():
            logits = torch.cat([twin(torch.from_numpy(x[i:i + 500])) for i in range(0, len(x), 500)])
        twin.load_state_dict(saved)
        target = torch.from_numpy(y)
        loss = float(torch.nn.functional.cross_entropy(logits, target))
        out[mode] = (loss, float((logits.argmax(1) == target).float().mean()))
    twin.train()
    return out


def drift(torch, model, twin):
    """Largest relative difference over the state-dict entries (weights and running statistics)."""
    import numpy as np
    theirs = {k: v.detach().numpy() for k, v in twin.state_dict().items()}
    worst = {"weights": (0.0, ""), "running": (0.0, "")}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        rel = float(np.linalg.norm(v - theirs[k]) / max(np.linalg.norm(v), 1e-12))
        kind = "running" if "running" in k else "weights"
        worst[kind] = max(worst[kind], (rel, k))
    return worst


def running_var_range(model):
    """The smallest and largest running variance over every BatchNorm of the model."""
    import numpy as np
    from npnet import nn
    vs = [m.running_var for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return float(min(v.min() for v in vs)), float(max(v.max() for v in vs))


def main():
    args = parse_args()
    pin_threads(args.threads)
    torch = load_frameworks(args.threads)
    from _twin import to_torch
    from npnet import losses, optim
    from npnet.models import build_model
    from npnet.train import train_step
    train, x_val, y_val = batches(SEED)
    steps = args.steps or len(train)
    report = {int(s) for s in args.report.split(",") if s} | {steps}
    model = build_model("resnet32", (1, 28, 28), 10, rng=SEED)
    if args.float64:
        import numpy as np
        model.astype(np.float64)
        train = [(x.astype(np.float64), y) for x, y in train]
        x_val = x_val.astype(np.float64)
        torch.set_default_dtype(torch.float64)  # the twin is built in float64, then loaded
    twin = to_torch(model)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    topt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    criterion = losses.CrossEntropyLoss()
    print(f"ResNet-32, embedded set: {len(train)} batches of {BATCH} per epoch, {steps} steps, "
          f"{'float64' if args.float64 else 'float32'}, {args.threads} threads; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("step | framework | train loss | val loss (eval BN) | val acc (eval BN) | val loss (batch BN) "
          "| val acc (batch BN) | running var min..max | largest drift: weights / running (key)")
    for step in range(1, steps + 1):
        x, y = train[(step - 1) % len(train)]
        loss, _ = train_step(model, criterion, opt, x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        tloss = float(tloss.detach())
        if step in report:
            d = drift(torch, model, twin)
            lo, hi = running_var_range(model)
            for name, res, tl in (("npnet", evaluate_npnet(model, x_val, y_val), loss),
                                  ("torch", evaluate_torch(torch, twin, x_val, y_val), tloss)):
                print(f"{step} | {name} | {tl:.4f} | {res['eval'][0]:.4g} | {100 * res['eval'][1]:.1f} % "
                      f"| {res['batch'][0]:.4f} | {100 * res['batch'][1]:.1f} % | {lo:.3g}..{hi:.3g} "
                      f"| {d['weights'][0]:.2e} ({d['weights'][1]}) / {d['running'][0]:.2e} "
                      f"({d['running'][1]})", flush=True)


if __name__ == "__main__":
    main()
