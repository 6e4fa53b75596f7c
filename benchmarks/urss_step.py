"""Time of one ``--loss urss`` training step (phase 1 and phase 2) relative to a ``pce`` step.

Same URSS network (:class:`wsss.models.urss_net.URSSNet`), same batch; a step is forward + terms
(+ the no-gradient second forward and the eigenspace term in phase 2, timed for each transform)
+ backward + SGD update. A DeepLabV3+ ``pce`` step on the same batch is timed too, for reference.
Prints the best-of-``--repeats`` time of each (after one warm-up step; :mod:`timing`) and the ratios,
measured in the same run.

    python benchmarks/urss_step.py                          # MobileNetV2 x0.5, batch 2, 96², CPU
    python benchmarks/urss_step.py --clock process          # CPU time (steadier on a shared machine)
    python benchmarks/urss_step.py --device cuda --backbone resnet50 --size 465 --batch 8
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import torch
from timing import CLOCKS, best_of


def main() -> None:
    from wsss.losses.partial_ce import partial_ce_term
    from wsss.losses.term import reduce_terms
    from wsss.losses.urss import URSSLoss
    from wsss.models import ModelConfig, empty_model
    from wsss.training.urss import urss_terms

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=96, help="square crop side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time or this process's CPU time")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    b, s = args.batch, args.size
    image = (torch.rand(b, 3, s, s, generator=g) * 255).to(device)
    labels = torch.full((b, s, s), 255, dtype=torch.int64)
    labels[:, s // 2, s // 4: 3 * s // 4] = torch.randint(0, args.classes, (b, 1), generator=g)
    labels = labels.to(device)
    valid = torch.ones(b, s, s, dtype=torch.bool, device=device)
    boundary = (torch.rand(b, s, s, generator=g) < 0.1).to(device)
    kw = dict(num_classes=args.classes, backbone=args.backbone, width_mult=args.width_mult)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nets = {"deeplab": empty_model(ModelConfig(**kw)).to(device),
                "urss": empty_model(ModelConfig(**kw, output_stride=8, head="urss")).to(device)}

    def pce(net):
        return lambda step: {"pce": partial_ce_term(net(image), labels, valid)}

    def urss(net, phase, transform=None):
        loss = URSSLoss(phase=phase, transform=transform)
        return lambda step: urss_terms(net, loss, image, labels, valid, boundary, seed=0, step=step)

    net = nets["urss"]
    cases = {"deeplab pce": (nets["deeplab"], pce(nets["deeplab"])), "urss-net pce": (net, pce(net)),
             "urss phase 1": (net, urss(net, 1)), "phase 2 flip": (net, urss(net, 2, "flip")),
             "phase 2 transl.": (net, urss(net, 2, "translation"))}
    times = {}
    for name, (net, terms_of) in cases.items():
        opt = torch.optim.SGD(net.parameters(), lr=1e-6, momentum=0.9)
        net.train()
        steps = itertools.count()

        def one_step():
            objective, _ = reduce_terms(terms_of(next(steps)))
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()

        times[name] = best_of(one_step, args.repeats, device, CLOCKS[args.clock])
    base = times["urss-net pce"]
    print(f"batch {b} × {s}², {args.backbone} x{args.width_mult}, {device}, {args.clock} clock, best of {args.repeats}, "
          f"{torch.get_num_threads()} threads")
    for name, t in times.items():
        print(f"{name:15s} {t * 1e3:9.1f} ms   {t / base:5.2f} × urss-net pce")


if __name__ == "__main__":
    main()
