"""Encoding of vital-sign observations into the model's input columns (NumPy only).

Shared by the runtime (:mod:`medserve.tasks.vitals.service`) and the offline export
(``model_export/vitals.py``), so training and serving encode identically.

Columns of the ONNX input ``observations`` ``[N, T, 8]`` (raw units; standardisation
is a Keras ``Normalization`` layer inside the graph):

====  ======================  ============================================================
 #    column                  encoding
====  ======================  ============================================================
 0    ``heart_rate``          beats/min
 1    ``respiratory_rate``    breaths/min
 2    ``spo2``                %
 3    ``temperature``         degrees Celsius
 4    ``systolic_bp``         mmHg
 5    ``consciousness``       ACVPU ordinal: A=0, C=1, V=2, P=3, U=4
 6    ``supplemental_oxygen`` 1 on oxygen, 0 on air
 7    ``dt_hours``            hours since the previous observation (0 for the first),
                              capped at :data:`DT_CAP_HOURS`
====  ======================  ============================================================

The second ONNX input ``mask`` ``[N, T]`` is 1 for a real observation and 0 for
right-padding (only used when sequences of different lengths share a batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np

__all__ = [
    "ACVPU_CODE",
    "COLUMNS",
    "DT_CAP_HOURS",
    "FIELD_SPECS",
    "MAX_OBSERVATIONS",
    "NUMERIC_FIELDS",
    "OBSERVATION_FIELDS",
    "REFERENCE_OBSERVATION",
    "encode",
    "pad_batch",
    "pad_ranges",
]

MAX_OBSERVATIONS: Final[int] = 500
DT_CAP_HOURS: Final[float] = 24.0
ACVPU_CODE: Final[dict[str, int]] = {"A": 0, "C": 1, "V": 2, "P": 3, "U": 4}
NUMERIC_FIELDS: Final[tuple[str, ...]] = (
    "heart_rate",
    "respiratory_rate",
    "spo2",
    "temperature",
    "systolic_bp",
)
#: Every key of an observation, in the order the API documents them.
OBSERVATION_FIELDS: Final[tuple[str, ...]] = (
    "time",
    *NUMERIC_FIELDS,
    "consciousness",
    "supplemental_oxygen",
)
#: Population "normal" observation: fills a missing first reading in training data and
#: occludes a window that covers a whole sequence in explanations.
REFERENCE_OBSERVATION: Final[dict[str, Any]] = {
    "heart_rate": 75.0,
    "respiratory_rate": 16.0,
    "spo2": 97.0,
    "temperature": 36.8,
    "systolic_bp": 125.0,
    "consciousness": "A",
    "supplemental_oxygen": False,
}
COLUMNS: Final[tuple[str, ...]] = (*NUMERIC_FIELDS, "consciousness", "supplemental_oxygen", "dt_hours")

#: The observation fields as written into ``manifest["vitals"]["features"]``:
#: names, units and the physiologically possible ranges the API enforces.
FIELD_SPECS: Final[list[dict[str, Any]]] = [
    {
        "name": "time",
        "type": "datetime",
        "unit": "ISO-8601",
        "description": "time of the observation; all naive or all with a UTC offset; strictly ascending",
        "encoding": f"dt_hours = hours since the previous observation, 0 for the first, capped at {DT_CAP_HOURS:g}",
    },
    {
        "name": "heart_rate",
        "type": "number",
        "unit": "beats/min",
        "min": 0.0,
        "max": 300.0,
        "description": "pulse rate",
    },
    {
        "name": "respiratory_rate",
        "type": "number",
        "unit": "breaths/min",
        "min": 0.0,
        "max": 80.0,
        "description": "respiration rate",
    },
    {
        "name": "spo2",
        "type": "number",
        "unit": "%",
        "min": 0.0,
        "max": 100.0,
        "description": "peripheral oxygen saturation (NEWS2 scale 1)",
    },
    {
        "name": "temperature",
        "type": "number",
        "unit": "°C",
        "min": 25.0,
        "max": 45.0,
        "description": "body temperature",
    },
    {
        "name": "systolic_bp",
        "type": "number",
        "unit": "mmHg",
        "min": 0.0,
        "max": 300.0,
        "description": "systolic blood pressure",
    },
    {
        "name": "consciousness",
        "type": "string",
        "unit": None,
        "allowed": list(ACVPU_CODE),
        "description": "ACVPU: Alert, new Confusion, Voice, Pain, Unresponsive",
        "encoding": "ordinal A=0, C=1, V=2, P=3, U=4",
    },
    {
        "name": "supplemental_oxygen",
        "type": "boolean",
        "unit": None,
        "description": "true when breathing supplemental oxygen, false on air",
        "encoding": "1 true, 0 false",
    },
]


def encode(observations: Sequence[Mapping[str, Any]], times: Sequence[datetime]) -> np.ndarray:
    """Encode one patient's (validated) observations as a ``[T, 8]`` float32 array.

    Parameters
    ----------
    observations
        Mappings with the fields of :data:`OBSERVATION_FIELDS` (``time`` is ignored
        here; the parsed ``times`` are used).
    times
        Parsed, ascending observation times, one per observation.

    Returns
    -------
    numpy.ndarray
        ``[T, len(COLUMNS)]`` in the column order of :data:`COLUMNS`.
    """
    if len(observations) != len(times):
        raise ValueError("one time per observation")
    t = len(observations)
    x = np.array(
        [
            [
                o["heart_rate"],
                o["respiratory_rate"],
                o["spo2"],
                o["temperature"],
                o["systolic_bp"],
                ACVPU_CODE[str(o["consciousness"])],
                1.0 if o["supplemental_oxygen"] else 0.0,
                0.0,
            ]
            for o in observations
        ],
        dtype=np.float64,
    ).astype(np.float32)
    if t > 1:
        deltas = np.array([(b - a).total_seconds() / 3600.0 for a, b in zip(times, times[1:], strict=False)])
        x[1:, 7] = np.clip(deltas, 0.0, DT_CAP_HOURS)
    return x


def pad_batch(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ``[T_i, F]`` sequences into ``observations [N, T, F]`` and ``mask [N, T]``.

    Parameters
    ----------
    sequences
        Encoded sequences (at least one observation each).

    Returns
    -------
    tuple of numpy.ndarray
        ``(observations, mask)``, float32; padding rows are zeros with mask 0.
    """
    if not sequences:
        raise ValueError("no sequences")
    n, t_max = len(sequences), max(len(s) for s in sequences)
    f = sequences[0].shape[1]
    x = np.zeros((n, t_max, f), dtype=np.float32)
    m = np.zeros((n, t_max), dtype=np.float32)
    for i, s in enumerate(sequences):
        x[i, : len(s)] = s
        m[i, : len(s)] = 1.0
    return x, m


def pad_ranges(x: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pad_batch` of the sequences ``x[starts[i] : starts[i] + lengths[i]]`` of one ``[sum T, F]`` array.

    The same arrays as ``pad_batch([x[s : s + t] for s, t in zip(starts, lengths)])``, copied in
    one indexing operation instead of one per sequence.
    """
    if not len(lengths):
        raise ValueError("no sequences")
    lengths = np.asarray(lengths, dtype=np.intp)
    steps = np.arange(int(lengths.max()))
    real = steps < lengths[:, None]  # [N, T]: an observation, not padding
    out = np.zeros((len(lengths), len(steps), x.shape[1]), dtype=np.float32)
    out[real] = x[(np.asarray(starts, dtype=np.intp)[:, None] + steps)[real]]
    return out, real.astype(np.float32)
