"""The jobs benchmark still measures what it says: on a small seeded database, the round
asks everyone in the region, the panel invites everyone but its organiser, the update
reaches everyone who raised its theme, each in more than one part.

Not a timed test (speed is only ever reported by `make bench`): a broken benchmark fails
here rather than printing a wrong number."""

from __future__ import annotations

import pytest

from bench import jobs
from bot import checkins, panels, updates


async def test_each_job_reaches_everyone_it_is_for_in_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module, batch in ((checkins, "ROUND_BATCH"), (panels, "INVITE_BATCH")):
        monkeypatch.setattr(module, batch, 40)
    monkeypatch.setattr(updates, "DELIVER_BATCH", 40)
    result = await jobs.run(1_200)  # 100 people in the measured region

    region = result["region_people"]
    assert region == 100
    assert result["round"]["asked"] == region
    assert result["panel"]["invited"] == region - 1  # never the organiser
    assert result["update"]["delivered"] == result["raised_the_theme"] > 0
    assert result["round"]["jobs"] == 4  # 40 + 40 + 20, then once more from the start
    assert result["panel"]["jobs"] == 2  # 40 in the organiser's, 40 + 19 in the parts
    assert result["update"]["jobs"] >= 1
    for key in ("round", "panel", "update"):
        assert 0 < result[key]["mean_s"] <= result[key]["longest_s"], key
