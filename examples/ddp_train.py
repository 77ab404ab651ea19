"""Data-parallel training of a small CNN made of corr2d_ext.Conv2d, on one or many processes.

One script for three uses:

    python examples/ddp_train.py                                   # one process, CPU or GPU
    torchrun --nproc-per-node 4 examples/ddp_train.py              # 4 GPUs (NCCL), or 4 CPU
                                                                   # processes (gloo) without GPUs
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 \\
        --master-addr HOST0 --master-port 29500 examples/ddp_train.py   # and node-rank 1 on HOST1

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the environment)
each process joins the process group, takes the GPU numbered LOCAL_RANK when there is one
(backend NCCL) or stays on the CPU (backend gloo), wraps the model in DistributedDataParallel,
and trains on its share of every global batch: a DistributedSampler deals the shuffled data
round-robin, so the processes' batches of --batch-size together form the global batch of
--batch-size x WORLD_SIZE that one process would draw with the same seed. DDP averages the
gradients, so N processes take the same steps as one process on the global batches:
tests/test_distributed.py checks that, to float64 rounding, on 2 CPU processes.

The data are made here, the same in every process: 16x16 images of a vertical bar, a horizontal
bar or a diagonal, at random places, in noise (the edges of the tutorial, to classify).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import corr2d_ext

CLASSES = ("vertical", "horizontal", "diagonal")


def make_dataset(samples: int, size: int = 16, seed: int = 0, dtype=torch.float32) -> TensorDataset:
    """`samples` noisy images (1, size, size) with labels 0 (vertical bar), 1 (horizontal bar),
    2 (diagonal), drawn from `seed` alone, so every process makes the same ones."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(CLASSES), (samples,), generator=g)
    images = 0.3 * torch.randn(samples, 1, size, size, generator=g, dtype=torch.float64)
    where = torch.randint(2, size - 2, (samples,), generator=g)
    idx = torch.arange(size)
    for i in range(samples):
        c, p = labels[i].item(), where[i].item()
        if c == 0:
            images[i, 0, :, p] += 1
        elif c == 1:
            images[i, 0, p, :] += 1
        else:  # a diagonal through (p, p), wrapping round
            images[i, 0, idx, (idx + p) % size] += 1
    return TensorDataset(images.to(dtype), labels)


def make_model(seed: int = 0, dtype=torch.float32, device="cpu") -> nn.Module:
    """Two corr2d_ext.Conv2d layers and a linear classifier, initialised from `seed`.

    No batch norm: its statistics would be per process (SyncBatchNorm would fix that), and the
    point here is that N processes compute exactly what one does.
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        corr2d_ext.Conv2d(1, 8, 3, padding=1), nn.ReLU(),             # 16x16
        corr2d_ext.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),  # 8x8
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),                         # 16
        nn.Linear(16, len(CLASSES)),
    ).to(dtype=dtype, device=device)


def train(
    *,
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 0.1,
    samples: int = 512,
    seed: int = 0,
    dtype=torch.float32,
    device="cpu",
    log=print,
) -> nn.Module:
    """Trains make_model(seed) with SGD (momentum 0.9) on make_dataset(samples, seed=seed) and
    returns the trained model (unwrapped from DDP).

    Inside a process group (torch.distributed initialised) the model is wrapped in
    DistributedDataParallel and `batch_size` is this process's share; otherwise it is one
    process and `batch_size` is the whole batch. Loss and accuracy are averaged over all
    processes before `log` sees them (which only rank 0 should print).
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    model = make_model(seed, dtype, device)
    # DDP broadcasts rank 0's parameters at construction; same seed, so they are equal anyway.
    if distributed:
        device_ids = None if device == "cpu" else [torch.device(device)]
        net = DistributedDataParallel(model, device_ids=device_ids)
    else:
        net = model
    data = make_dataset(samples, seed=seed, dtype=dtype)
    # The sampler deals a shuffled order round-robin: rank r gets positions r, r + W, ...; with
    # drop_last every process gets as many batches, all of batch_size.
    sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = net(images)
            # The mean over this process's share; DDP averages the gradients over processes,
            # which makes it the mean over the global batch.
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            totals += torch.stack([loss.detach().double() * len(labels),
                                   (logits.argmax(1) == labels).sum().double(),
                                   torch.tensor(float(len(labels)), device=device)])
        if distributed:
            dist.all_reduce(totals)
        loss_sum, correct, count = totals.tolist()
        log(f"epoch {epoch + 1}/{epochs}: loss {loss_sum / count:.4f}, "
            f"train accuracy {100 * correct / count:.1f}% ({int(count)} images "
            f"on {world_size} process{'es' if world_size > 1 else ''})")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--cpu", action="store_true", help="use the CPU (gloo) even with GPUs")
    parser.add_argument("--out", type=Path,
                        help="directory to save each rank's final state_dict in, as rank<N>.pt")
    args = parser.parse_args(argv)

    use_cuda = not args.cpu and torch.cuda.is_available() and corr2d_ext.cuda_built
    distributed = "WORLD_SIZE" in os.environ  # set by torchrun (or by hand, as the test does)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(device)
    if distributed:
        # env:// reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT. The timeout bounds every
        # collective, so a process whose peer died fails instead of waiting for ever.
        dist.init_process_group("nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank() if distributed else 0
    try:
        model = train(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      samples=args.samples, seed=args.seed, dtype=getattr(torch, args.dtype),
                      device=device, log=print if rank == 0 else (lambda *_: None))
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.cpu() for k, v in model.state_dict().items()},
                       args.out / f"rank{rank}.pt")
        if distributed:
            # Every rank gets here before any closes its connections, so that no collective is
            # in flight on a peer when gloo's pairs go down (a rank that failed skips this: its
            # peers would wait here for the timeout). The line marks where the work ended and
            # the teardown began; tests/test_distributed.py tells a crash in one from the other.
            dist.barrier()
            print(f"rank {rank}: done, destroying the process group", file=sys.stderr,
                  flush=True)
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
