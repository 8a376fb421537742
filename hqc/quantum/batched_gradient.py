"""Parameter-shift gradients with one estimator PUB per circuit for the whole batch.

``ParamShiftEstimatorGradient`` submits one PUB per sample and shift, so a batch of 64 samples
and 30 parameters is 3840 PUBs, each paying the estimator's per-PUB overhead (Aer rebuilds and
re-runs the circuit for every PUB). The shifted parameter sets of one circuit only differ in
their values, so they fit one PUB: a ``(observables, 1)`` observable array broadcast against a
``(sets, parameters)`` value array. Imported only by the qiskit backend (it loads
qiskit-machine-learning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.providers.options import Options
from qiskit.quantum_info.operators.base_operator import BaseOperator
from qiskit_machine_learning.gradients import (
    BaseEstimatorGradient,
    EstimatorGradientResult,
    ParamShiftEstimatorGradient,
)
from qiskit_machine_learning.gradients.utils import _make_param_shift_parameter_values


class BatchedParamShiftEstimatorGradient(BaseEstimatorGradient):
    """``ParamShiftEstimatorGradient``'s values, one ``EstimatorV2`` PUB per distinct circuit.

    Entries sharing a circuit and a parameter selection are grouped; duplicate base values (the
    same sample under several observables, as ``EstimatorQNN`` submits them) are simulated once.
    Only ``BaseEstimatorV2`` estimators are supported.
    """

    SUPPORTED_GATES = ParamShiftEstimatorGradient.SUPPORTED_GATES

    def _run(
        self,
        circuits: Sequence[QuantumCircuit],
        observables: Sequence[BaseOperator],
        parameter_values: Sequence[Sequence[float]] | np.ndarray,
        parameters: Sequence[Sequence[Parameter]],
        **options,
    ) -> EstimatorGradientResult:
        """Gradients by the parameter-shift rule on the gates' unique-parameter circuits."""
        if not isinstance(self._estimator, BaseEstimatorV2):
            raise TypeError("BatchedParamShiftEstimatorGradient needs a BaseEstimatorV2")
        g_circuits, g_values, g_parameters = self._preprocess(
            circuits, parameter_values, parameters, self.SUPPORTED_GATES
        )
        groups: dict[tuple, list[int]] = {}
        for i, (circuit, params) in enumerate(zip(g_circuits, g_parameters, strict=True)):
            groups.setdefault((id(circuit), tuple(params)), []).append(i)
        pubs, layouts = [], []
        for members in groups.values():
            pub, layout = self._group_pub(
                g_circuits[members[0]],
                [observables[i] for i in members],
                np.asarray([g_values[i] for i in members], dtype=float),
                g_parameters[members[0]],
            )
            pubs.append(pub)
            layouts.append(layout)
        results = self._estimator.run(pubs).result()
        gradients: list[np.ndarray] = [np.empty(0)] * len(g_circuits)
        for members, result, (obs_index, value_index, n_shifts) in zip(
            groups.values(), results, layouts, strict=True
        ):
            evs = np.asarray(result.data.evs)
            evs = evs.reshape(evs.shape[0], -1, n_shifts)
            half = n_shifts // 2
            for i, o, v in zip(members, obs_index, value_index, strict=True):
                gradients[i] = (evs[o, v, :half] - evs[o, v, half:]) / 2
        metadata = [{"parameters": params} for params in g_parameters]
        unique = EstimatorGradientResult(
            gradients=gradients, metadata=metadata, options=Options(**options)
        )
        return self._postprocess(unique, circuits, parameter_values, parameters)

    def _group_pub(
        self,
        circuit: QuantumCircuit,
        observables: list[BaseOperator],
        values: np.ndarray,
        parameters: Sequence[Parameter],
    ) -> tuple[tuple, tuple[np.ndarray, np.ndarray, int]]:
        """One PUB for a group and where each member's shifted values land in its result.

        Returns the PUB ``(circuit, (O, 1) observables, (U * 2k, P) values)`` and, per member,
        its observable row, its base-value block and the block size ``2k``.
        """
        unique_obs: list[BaseOperator] = []
        obs_index = np.empty(len(observables), dtype=int)
        for i, observable in enumerate(observables):
            match = next((j for j, o in enumerate(unique_obs) if o == observable), None)
            if match is None:
                unique_obs.append(observable)
                match = len(unique_obs) - 1
            obs_index[i] = match
        base, value_index = np.unique(values, axis=0, return_inverse=True)
        shifted = np.concatenate(
            [_make_param_shift_parameter_values(circuit, row, parameters) for row in base]
        )
        if self._pass_manager is not None:
            circuit = self._pass_manager.run(circuit)
            unique_obs = [o.apply_layout(circuit.layout) for o in unique_obs]
        layout = (obs_index, value_index.ravel(), 2 * len(parameters))
        return (circuit, [[o] for o in unique_obs], shifted), layout
