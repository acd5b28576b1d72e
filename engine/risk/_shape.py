"""Give a result the shape of the input: pandas in, pandas out; a scalar in, a float out."""

from __future__ import annotations

import numpy as np
import pandas as pd


def like(template: object, values: np.ndarray) -> object:
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, name=template.name)
    if isinstance(template, pd.DataFrame):
        return pd.DataFrame(values, index=template.index, columns=template.columns)
    if np.ndim(values) == 0:
        return float(values)
    return values
