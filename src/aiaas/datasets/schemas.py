from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from aiaas.ml.task import Task
from aiaas.pagination import Page

Source = Literal["builtin", "upload", "feedback"]


class DatasetRead(BaseModel):
    id: str = Field(description="`builtin:<name>`, `feedback:<model>`, or the upload's id.")
    name: str
    task: Task
    source: Source
    rows: int
    input_shape: list[int] = Field(description="Shape of one example, without the batch axis.")
    classes: list[str | int] | None = Field(
        description="Class labels in index order (classification); null for regression."
    )
    description: str | None = None
    created_at: datetime | None = None


DatasetPage = Page[DatasetRead]
