"""How LearnerGroup.update scales with Ray learners, against a plain DDP script.

For the default MLP and a ~1M-parameter MLP, on one fixed BC batch: samples/s of
``update`` with 0 (local), 1 and 2 learners (1 CPU each); the start-up time of a group; how
long ``async_update`` blocks its caller; and, in the same Ray session, two plain Ray actors
training the same module under DistributedDataParallel on gloo (the reference the 2-learner
group should stay within 10% of).

    .venv/bin/python bench/learner_group_scaling.py [--repeats 5] [--batch 4096]
"""

from __future__ import annotations

import argparse
import socket
import time

import gymnasium as gym
import numpy as np
import ray

from learnerkit import Columns, LearnerGroup, LearnerSpec, ModuleSpec, SampleBatch, ScalingConfig

OBS = gym.spaces.Box(-np.inf, np.inf, (16,), np.float32)
ACTIONS = gym.spaces.Discrete(4)
MODELS = {
    "default MLP (64, 64)": {},
    "~1M-param MLP (shared 1000x1000)": {"hiddens": [1000, 1000], "vf_share_layers": True},
}


def make_batch(n: int) -> SampleBatch:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, *OBS.shape)).astype(np.float32)
    return SampleBatch({Columns.OBS: obs, Columns.ACTIONS: rng.integers(0, 4, size=n)})


def spec(model_config: dict, num_learners: int) -> LearnerSpec:
    return LearnerSpec(
        algorithm="bc",
        module_spec=ModuleSpec(OBS, ACTIONS, model_config=model_config),
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=1),
    )


def rate(fn, rows: int, repeats: int) -> float:
    fn()  # warm-up (first DDP iteration, allocator)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return rows * repeats / (time.perf_counter() - start)


@ray.remote(num_cpus=1)
class PlainDDPWorker:
    """The script-style reference: the same module, Adam and BC loss, DDP on gloo."""

    def address(self):
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def setup(self, rank, world, address, port, model_config):
        import torch
        import torch.distributed as dist

        from learnerkit.backends.torch.modules import TorchMLPActorCritic

        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method=f"tcp://{address}:{port}", rank=rank, world_size=world
        )
        torch.manual_seed(0)
        self.module = TorchMLPActorCritic(OBS, ACTIONS, model_config)
        self.ddp = torch.nn.parallel.DistributedDataParallel(
            self.module, find_unused_parameters=True
        )
        self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-3)

    def train(self, shard, minibatch_size):
        import torch
        import torch.nn.functional as F

        obs = torch.from_numpy(np.ascontiguousarray(shard[Columns.OBS]))
        actions = torch.from_numpy(np.ascontiguousarray(shard[Columns.ACTIONS]))
        order = torch.randperm(len(obs))
        for start in range(0, len(obs), minibatch_size):
            idx = order[start : start + minibatch_size]
            out = self.ddp({Columns.OBS: obs[idx]})
            loss = F.cross_entropy(out[Columns.ACTION_DIST_INPUTS], actions[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return float(loss)


def plain_reference(model_config, batch, minibatch_size, repeats) -> float:
    workers = [PlainDDPWorker.remote() for _ in range(2)]
    address, port = ray.get(workers[0].address.remote())
    ray.get([w.setup.remote(i, 2, address, port, model_config) for i, w in enumerate(workers)])
    shards = batch.shard(2)

    def step():
        ray.get(
            [w.train.remote(s, minibatch_size // 2) for w, s in zip(workers, shards, strict=True)]
        )

    try:
        return rate(step, batch.count, repeats)
    finally:
        for w in workers:
            ray.kill(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--minibatch", type=int, default=512)
    args = parser.parse_args()
    batch = make_batch(args.batch)

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    print(
        f"ray.init: {time.perf_counter() - start:.1f} s  ({ray.cluster_resources()['CPU']:g} CPUs)"
    )
    print(f"batch {args.batch} rows, minibatch {args.minibatch}, 1 epoch, repeats {args.repeats}\n")
    for name, model_config in MODELS.items():
        print(f"== {name}")
        rates, startups = {}, {}
        for n in (0, 1, 2):
            t0 = time.perf_counter()
            group = LearnerGroup(spec(model_config, n), max_async_updates=2)
            startups[n] = time.perf_counter() - t0
            try:
                if n == 0:
                    params = group.foreach_learner(
                        lambda lr: sum(p.numel() for p in lr.module["default_policy"].parameters())
                    )[0]
                    print(f"   parameters: {params:,}")
                rates[n] = rate(
                    lambda g=group: g.update(batch, minibatch_size=args.minibatch),
                    batch.count,
                    args.repeats,
                )
                if n == 2:
                    blocked = []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        group.async_update(batch, minibatch_size=args.minibatch)
                        blocked.append(time.perf_counter() - t0)
                        group.wait_async_updates()
            finally:
                group.shutdown()
            print(f"   {n} learner(s): {rates[n]:9.0f} samples/s   start-up {startups[n]:5.2f} s")
        ref = plain_reference(model_config, batch, args.minibatch, args.repeats)
        print(f"   plain 2-actor DDP script: {ref:9.0f} samples/s")
        print(f"   ratio 2-learner group / plain reference: {rates[2] / ref:.2f} (target >= 0.90)")
        print(f"   ratio 2 learners / local: {rates[2] / rates[0]:.2f}")
        print(
            f"   async_update blocks the caller: median {1e3 * np.median(blocked):.2f} ms, "
            f"max {1e3 * max(blocked):.2f} ms (target < 5 ms)"
        )
        print(f"   group start-up (Ray running), 2 learners: {startups[2]:.2f} s (target < 10 s)\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
