"""The API's key cache: trusted only while change notifications are heard (pure logic)."""

from __future__ import annotations

from api.key_cache import KeyCache


def test_nothing_is_cached_until_the_listener_is_up() -> None:
    cache: KeyCache[str] = KeyCache(max_age=60)
    cache.put("k", "tenant-a", cache.generation)
    assert cache.get("k") is None
    cache.set_listening(True)
    cache.put("k", "tenant-a", cache.generation)
    assert cache.get("k") == "tenant-a"


def test_a_change_drops_every_key() -> None:
    cache: KeyCache[str] = KeyCache(max_age=60)
    cache.set_listening(True)
    cache.put("k", "tenant-a", cache.generation)
    cache.put("j", "tenant-b", cache.generation)
    cache.invalidate()
    assert cache.get("k") is None and cache.get("j") is None


def test_a_lookup_overtaken_by_a_change_is_not_kept() -> None:
    cache: KeyCache[str] = KeyCache(max_age=60)
    cache.set_listening(True)
    before_lookup = cache.generation
    cache.invalidate()  # the key was revoked while its row was being read
    cache.put("k", "tenant-a", before_lookup)
    assert cache.get("k") is None


def test_losing_the_listener_turns_the_cache_off_and_empties_it() -> None:
    cache: KeyCache[str] = KeyCache(max_age=60)
    cache.set_listening(True)
    cache.put("k", "tenant-a", cache.generation)
    cache.set_listening(False)
    assert cache.get("k") is None
    cache.set_listening(True)  # back: what was kept before may have missed a change
    assert cache.get("k") is None


def test_entries_expire_after_max_age() -> None:
    now = [0.0]
    cache: KeyCache[str] = KeyCache(max_age=60, timer=lambda: now[0])
    cache.set_listening(True)
    cache.put("k", "tenant-a", cache.generation)
    now[0] = 59.0
    assert cache.get("k") == "tenant-a"
    now[0] = 61.0
    assert cache.get("k") is None
