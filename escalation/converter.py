"""The one data converter that the worker, the API and the simulator share:
pydantic models travel through Temporal intact."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter


def data_converter() -> DataConverter:
    return pydantic_data_converter
