"""DistributedDataParallel: 2 CPU processes (gloo) train ours and torchvision's model side by side."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

import resnet_kernels.models as rk
from test_models_helpers import images, same_weights_pair

tv = pytest.importorskip("torchvision.models.resnet")

WORLD = 2
STEPS = 3


def _make(models):
    return models.ResNet(models.BasicBlock, [1, 1, 1, 1], num_classes=10)


def _train(model, rank):
    model = DDP(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(STEPS):
        x = images(2, 32, seed=100 * rank + step)  # each rank its own data
        target = torch.tensor([step % 10, rank])
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()
    return model.module


def _worker(rank, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        theirs, ours = same_weights_pair(lambda: _make(tv), lambda: _make(rk))
        theirs, ours = _train(theirs.train(), rank), _train(ours.train(), rank)
        their_state = theirs.state_dict()
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, their_state[key], rtol=1e-5, atol=1e-6, msg=key)
        # gradients were averaged: every rank holds the same parameters
        flat = torch.cat([p.detach().flatten() for p in ours.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(gathered, flat)
        torch.testing.assert_close(gathered[0], gathered[1], rtol=0, atol=0)
    finally:
        dist.destroy_process_group()


def test_ddp_train_steps_match_torchvision(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"),), nprocs=WORLD, join=True)
