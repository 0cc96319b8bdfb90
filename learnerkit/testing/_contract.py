"""``AlgorithmContract``: the contract checks as a pytest test class to subclass (like
pandas' extension-array base tests): each check is a test, run per framework the algorithm
declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import learnerkit
from learnerkit.testing import _checks, _tiny_task


def _frameworks_of(cls: type) -> list[str]:
    declared = learnerkit.get_algorithm(cls.algorithm).frameworks
    return [f for f in cls.frameworks or declared if f in declared]


class AlgorithmContract:
    """Subclass as ``class TestMyAlgorithmContract(AlgorithmContract)`` with
    ``algorithm = "my_algorithm"`` (installed, or registered in ``setup_method`` /
    a fixture). Class attributes tune it:

    - ``hyperparameters``: overrides of the defaults (small sizes keep it fast);
    - ``frameworks``: a subset of the algorithm's frameworks (default: all it declares);
    - ``observation_space`` / ``action_space``: the spaces modules are built for (default:
      a 2-float Box and Discrete(2));
    - ``allow_no_gradient``: parameter-name patterns the loss may leave without a gradient;
    - ``ray_learner_group = ("torch",)``: the frameworks on which to also check a group of
      2 Ray learners (marked ``ray``; starts Ray, or uses the session already up);
    - ``learns_tiny_task = ("torch",)``: the frameworks on which to also train on the
      shipped two-state task (``TWO_STATE_ENV_ID``) within ``tiny_task_budget`` env steps
      (marked ``slow``), with ``tiny_task_hyperparameters``.

    Both are off by default: they take seconds each.
    """

    algorithm: ClassVar[str]
    hyperparameters: ClassVar[dict[str, Any]] = {}
    frameworks: ClassVar[tuple[str, ...]] = ()
    observation_space: ClassVar[Any] = _checks.BOX_OBS
    action_space: ClassVar[Any] = _checks.TWO_ACTIONS
    allow_no_gradient: ClassVar[tuple[str, ...]] = ()
    ray_learner_group: ClassVar[tuple[str, ...]] = ()
    learns_tiny_task: ClassVar[tuple[str, ...]] = ()
    tiny_task_budget: ClassVar[int] = 20_000
    tiny_task_hyperparameters: ClassVar[dict[str, Any]] = {}

    @classmethod
    def pytest_generate_tests(cls, metafunc: pytest.Metafunc) -> None:
        if "contract_framework" in metafunc.fixturenames:
            metafunc.parametrize("contract_framework", _frameworks_of(metafunc.cls))

    @pytest.fixture
    def subject(self) -> Iterator[_checks.Subject]:
        yield _checks.Subject(
            algorithm=self.algorithm,
            hyperparameters=self.hyperparameters,
            observation_space=self.observation_space,
            action_space=self.action_space,
            allow_no_gradient=self.allow_no_gradient,
        )

    def test_it_registers_and_lists_with_status_ok(self, subject: _checks.Subject) -> None:
        _checks.check_registers(subject)

    @pytest.fixture
    def contract_run(
        self,
        subject: _checks.Subject,
        contract_framework: str,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> _checks.ContractRun:
        """The framework's ContractRun, done by the first test of the class that needs it
        and kept on the class for the others."""
        cls = type(self)
        runs = cls.__dict__.get("_contract_runs")
        if runs is None:
            runs = {}
            cls._contract_runs = runs
        if contract_framework not in runs:
            directory = tmp_path_factory.mktemp(f"{self.algorithm}-{contract_framework}")
            runs[contract_framework] = _checks.run_contract(
                subject, contract_framework, directory / "state"
            )
        return runs[contract_framework]

    def test_every_hook_it_implements_is_called_with_the_documented_arguments(
        self, contract_run: _checks.ContractRun
    ) -> None:
        _checks.check_hooks(contract_run)

    def test_its_loss_is_finite_and_reaches_every_trainable_parameter(
        self, contract_run: _checks.ContractRun
    ) -> None:
        _checks.check_loss_and_gradients(contract_run)

    def test_its_state_round_trips_bitwise(self, contract_run: _checks.ContractRun) -> None:
        _checks.check_state_round_trip(contract_run)

    def test_rows_it_is_told_to_mask_change_nothing(
        self, contract_run: _checks.ContractRun
    ) -> None:
        if not contract_run.subject.declared.reads_loss_mask:
            pytest.skip("the algorithm does not declare reads_loss_mask=True")
        _checks.check_loss_mask(contract_run)

    def test_bad_batches_raise_learnerkit_errors(
        self,
        subject: _checks.Subject,
        contract_framework: str,
        contract_run: _checks.ContractRun,
    ) -> None:
        # Batches missing a column each on the first framework only: the host refuses them
        # before any backend, and each a loss ignores costs TensorFlow a trace.
        first = _frameworks_of(type(self))[0]
        _checks.check_bad_batches(
            subject,
            contract_framework,
            every_column=contract_framework == first,
            learner=contract_run.learner,
        )

    @pytest.mark.ray
    def test_a_group_of_two_ray_learners_stays_bitwise_identical(
        self, subject: _checks.Subject, contract_framework: str
    ) -> None:
        if contract_framework not in self.ray_learner_group:
            pytest.skip(f"{contract_framework} not in ray_learner_group")
        _checks.check_ray_learner_group(subject, contract_framework)

    @pytest.mark.slow
    def test_it_learns_the_two_state_task(
        self, subject: _checks.Subject, contract_framework: str, tmp_path: Path
    ) -> None:
        if contract_framework not in self.learns_tiny_task:
            pytest.skip(f"{contract_framework} not in learns_tiny_task")
        _tiny_task.check_learns_tiny_task(
            self.algorithm,
            contract_framework,
            tmp_path,
            budget=self.tiny_task_budget,
            hyperparameters=dict(self.tiny_task_hyperparameters),
        )
