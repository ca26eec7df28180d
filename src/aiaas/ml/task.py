"""What a model answers: a class (``classification``) or values (``regression``)."""

from __future__ import annotations

from typing import Literal, TypeAlias

Task: TypeAlias = Literal["classification", "regression"]
