"""Time of one ``--loss spml`` training step relative to a ``pce`` step on the same batch.

A step is forward + terms + backward + SGD update. ``spml``: the SPML network (backbone at output
stride 8, embedding at stride 4), k-means segments × superpixel regions × seeds, the relations img / ann /
occ with the memory bank filled (two batches pushed before timing) and the classifier CE, with the
default weights and κ. ``pce``: DeepLabV3+ on the same backbone with partial CE, at output stride 16
(the ``wsss train`` default) and at 8 (the SPML backbone's stride). Regions: square superpixels of
``--region`` pixels; seeds: one horizontal scribble per image. ``spml masked``: the same step with the
per-pixel loss of :func:`wsss.losses.spml_reference.dense_contrastive_losses` (``N×S`` masks, two
log-sum-exps under autograd; the implementation before the grouped one). Prints the best-of-N time of
each and the ratios, measured in the same run (interleaved), for each ``--batch`` (8 × 128² on EfficientNet-Lite0 at
one thread is the CamVid setting of docs/results.md).

    python benchmarks/spml_step.py                          # EfficientNet-Lite0, batch 4 and 8, 128², CPU, 1 thread
    python benchmarks/spml_step.py --device cuda --backbone resnet101 --size 512 --batch 16 --no-masked
"""

from __future__ import annotations

import argparse
import warnings

import torch

from timing import CLOCKS, best_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=128, help="square crop side")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--no-masked", action="store_true", help="skip the step with the masked (former) loss")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--region", type=int, default=16, help="side of the square superpixels in pixels")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for batch in args.batch:
        run(args, batch)


def masked_contrastive_losses(features, prototypes, own, group, group_positive, kappa):
    """:func:`wsss.losses.spml.contrastive_losses`'s arguments → the masked reference form."""
    from wsss.losses.spml_reference import dense_contrastive_losses

    positive = group_positive[group]
    return dense_contrastive_losses(features, prototypes, own, positive, ~positive, kappa)


def run(args, batch: int) -> None:
    from wsss.losses import spml as spml_module
    from wsss.losses.partial_ce import partial_ce_term
    from wsss.losses.registry import make_loss
    from wsss.losses.term import reduce_terms
    from wsss.models import ModelConfig, empty_model
    from wsss.models.spml_net import SPMLModelConfig, SPMLNet

    device = torch.device(args.device)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    b, s = batch, args.size
    image = (torch.rand(b, 3, s, s, generator=g) * 255).to(device)
    labels = torch.full((b, s, s), 255, dtype=torch.int64)
    for row, cls in ((s // 4, 0), (s // 2, None), (3 * s // 4, 0)):  # background, an object, background
        value = torch.randint(1, args.classes, (b, 1), generator=g) if cls is None else cls
        labels[:, row, s // 8: 7 * s // 8] = value
    labels = labels.to(device)
    valid = torch.ones(b, s, s, dtype=torch.bool, device=device)
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    regions = ((yy // args.region) * (s // args.region + 1) + xx // args.region)[None].expand(b, s, s).to(device)
    kw = dict(num_classes=args.classes, backbone=args.backbone, width_mult=args.width_mult)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nets = {"pce os16": empty_model(ModelConfig(**kw)).to(device),
                "pce os8": empty_model(ModelConfig(**kw, output_stride=8)).to(device),
                "spml": SPMLNet(SPMLModelConfig(**kw)).to(device)}
    if not args.no_masked:
        nets["spml masked"] = nets["spml"]
    loss = make_loss("spml", {})

    def step_of(name, net):
        opt = torch.optim.SGD(net.parameters(), lr=1e-6, momentum=0.9)

        def terms():
            if name.startswith("spml"):
                out = net(image)
                return loss.spml_terms(out["embedding"], out["logits"], labels, valid, regions, background=0)
            return {"pce": partial_ce_term(net(image), labels, valid)}

        def step():
            objective, _ = reduce_terms(terms())
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
        return step

    fast = spml_module.contrastive_losses
    steps = {}
    for name, net in nets.items():
        net.train()
        steps[name] = step_of(name, net)

    def timed(name):
        spml_module.contrastive_losses = masked_contrastive_losses if name == "spml masked" else fast
        try:
            return best_of(steps[name], 1, device, CLOCKS[args.clock])  # one warm-up step, one timed
        finally:
            spml_module.contrastive_losses = fast

    steps["spml"]()  # fill the memory bank: batches pushed before the timed steps
    times = {name: float("inf") for name in nets}
    for _ in range(args.repeat):  # interleaved, so load changes on a shared machine hit every row
        for name in nets:
            times[name] = min(times[name], timed(name))
    print(f"batch {b} × {s}², {args.backbone} x{args.width_mult}, {device}, {torch.get_num_threads()} thread(s), "
          f"{args.clock} clock, best of {args.repeat}")
    counts = loss.last_counts
    print(f"spml: {counts['pixels']} stride-4 pixels, {counts['segments']} batch segments, "
          f"{counts['memory']} memory-bank segments")
    for name, t in times.items():
        print(f"{name:11s} {t * 1e3:9.1f} ms   {t / times['pce os16']:5.2f} × pce os16   {t / times['pce os8']:5.2f} × pce os8")
    if "spml masked" in times:
        print(f"spml step with the grouped loss: {times['spml masked'] / times['spml']:.2f}× faster than with the masked one")


if __name__ == "__main__":
    main()
