from __future__ import annotations

import uuid

from aiaas.predictions.sync import fast_uuid4


def test_prediction_ids_are_distinct_version_4_uuids() -> None:
    ids = [fast_uuid4() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for ident in ids:
        parsed = uuid.UUID(ident)
        assert str(parsed) == ident
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
