from datetime import datetime, timezone

import pytest

from nexa.ledger.ids import new_run_id, parse_run_id


def test_run_id_has_spec_timestamp_and_suffix():
    moment = datetime(2025, 10, 28, 14, 12, 0, tzinfo=timezone.utc)
    run_id = new_run_id(moment)
    assert run_id.startswith("2025-10-28_141200-")
    assert parse_run_id(run_id) == moment


def test_two_runs_in_the_same_second_never_collide():
    moment = datetime(2025, 10, 28, 14, 12, 0, tzinfo=timezone.utc)
    assert len({new_run_id(moment) for _ in range(500)}) == 500


def test_malformed_run_id_is_rejected_with_the_expected_form():
    with pytest.raises(ValueError, match="YYYY-MM-DD_HHMMSS"):
        parse_run_id("yesterday")
