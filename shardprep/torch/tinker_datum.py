"""Rows as tinker `Datum`s, for training through the tinker API instead of a local model."""

from __future__ import annotations

from typing import Any

import numpy as np


def tinker_available() -> bool:
    try:
        import tinker  # noqa: F401
    except ImportError:
        return False
    return True


def to_tinker_datum(row: dict[str, Any]) -> Any:
    """An sft/1 or pretrain/1 row -> tinker.types.Datum (input tokens, target_tokens, weights).

    The shards already hold tinker's layout (inputs = tokens[:-1], targets = tokens[1:], one
    weight per target), so this only wraps the arrays.
    """
    try:
        from tinker import types
    except ImportError as exc:
        raise ImportError("to_tinker_datum needs the `tinker` package: pip install tinker") from exc
    target = np.asarray(row["target_ids"], dtype=np.int64)
    weights = np.asarray(row["weights"], dtype=np.float32)
    tensor_data = getattr(types, "TensorData", None)
    from_numpy = getattr(tensor_data, "from_numpy", None)
    loss_inputs: dict[str, Any] = (
        {"target_tokens": from_numpy(target), "weights": from_numpy(weights)}
        if from_numpy is not None
        else {"target_tokens": target.tolist(), "weights": weights.tolist()}
    )
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens=np.asarray(row["input_ids"]).tolist()),
        loss_fn_inputs=loss_inputs,
    )
