"""The loop's code, imported when it trains."""

from learnerkit.loops.contract import Iteration, Run, combine_results, on_policy_batch


class FullBatchLoop:
    """Sample with the latest weights, take a few full-batch gradient steps, repeat."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.updates = 0

    def start(self) -> None:
        self.run.runners.set_weights(self.run.group.get_weights(), self.updates)

    def step(self, timesteps: int) -> Iteration:
        run, hps = self.run, self.run.hps
        fragments = run.runners.sample()
        batch = on_policy_batch(fragments, gamma=hps.gamma, lambda_=hps.lambda_)
        results = [run.group.update(batch)[run.module_id] for _ in range(hps.num_updates)]
        self.updates += hps.num_updates
        self.start()  # the runners sample the next batch with the new weights
        learner = combine_results(results)
        return Iteration(
            env_steps=sum(f.env_steps for f in fragments),
            episodes=[e for f in fragments for e in f.episodes],
            metrics={
                "num_updates_total": self.updates,
                **{f"learner/{name}": value for name, value in learner.items()},
            },
        )

    def get_state(self) -> dict:
        return {"updates": self.updates}

    def set_state(self, state) -> None:
        self.updates = int(state["updates"])
