import json

import pytest

from actguide_plugin.core.level_cache import LevelCache


def test_save_load_round_trip(tmp_path):
    cache = LevelCache()
    cache.put("task-1", 10, 3)
    cache.put_full_failure("task-2", 4)
    path = tmp_path / "ckpt" / "actguide_level_cache.json"
    cache.save(path)
    restored = LevelCache.load(path)
    assert restored.get("task-1", 10) == 3
    assert restored.get("task-2", 4) == 5
    assert len(restored) == 2
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_entry_for_a_different_number_of_actions_is_ignored():
    cache = LevelCache()
    cache.put("t", 10, 3)
    assert cache.get("t", 12) is None
    assert cache.get("unknown", 10) is None


def test_put_rejects_level_outside_range():
    with pytest.raises(ValueError, match="outside"):
        LevelCache().put("t", 3, 4)


def test_load_reports_the_file_on_corruption(tmp_path):
    bad = tmp_path / "cache.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad)):
        LevelCache.load(bad)
    bad.write_text(json.dumps({"version": 1, "entries": {"t": {"num_actions": 2, "level": 9}}}))
    with pytest.raises(ValueError, match="task 't'"):
        LevelCache.load(bad)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "cache.json"
    cache = LevelCache()
    cache.put("t", 5, 2)
    cache.save(path)
    before = path.read_text()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", explode)
    cache.put("t", 5, 4)
    with pytest.raises(OSError, match="disk full"):
        cache.save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_subset_holds_only_the_asked_tasks():
    shared = LevelCache()
    shared.put("a", 4, 2)
    shared.put("b", 5, 5)
    part = shared.subset(["a", "missing"])
    assert part.get("a", 4) == 2 and "b" not in part and len(part) == 1
    part.put("a", 4, 1)
    assert shared.get("a", 4) == 2  # a copy: the shared cache changes only through its owner


def test_whole_group_failures_in_a_row_are_counted_and_a_rescue_resets_them(tmp_path):
    cache = LevelCache()
    assert cache.failure_streak("t", 4) == 0
    cache.put_full_failure("t", 4)
    cache.put_full_failure("t", 4)
    assert cache.failure_streak("t", 4) == 2 and cache.failure_streak("t", 5) == 0  # another L: unknown
    cache.save(tmp_path / "c.json")
    restored = LevelCache.load(tmp_path / "c.json")  # survives a checkpoint and resume
    assert restored.failure_streak("t", 4) == 2
    restored.put("t", 4, 4)
    assert restored.failure_streak("t", 4) == 0
    restored.put_full_failure("t", 4)
    assert restored.failure_streak("t", 4) == 1


def test_a_format_1_cache_loads_with_one_failure_per_failed_task(tmp_path):
    old = tmp_path / "v1.json"
    old.write_text(json.dumps({"version": 1, "entries": {"a": {"num_actions": 3, "level": 4},
                                                          "b": {"num_actions": 3, "level": 2}}}))  # fmt: skip
    cache = LevelCache.load(old)
    assert cache.failure_streak("a", 3) == 1 and cache.failure_streak("b", 3) == 0 and cache.get("b", 3) == 2


def test_a_streak_on_a_rescued_entry_is_a_corrupt_cache(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"version": 2, "entries": {"t": {"num_actions": 3, "level": 2, "full_failures": 1}}}))
    with pytest.raises(ValueError, match="task 't' has full_failures 1 with level 2"):
        LevelCache.load(bad)
