"""``EpisodeStore.open`` fingerprints the dataset once (the column cache folder it opened is the
one it reports), not again right after ``open_columns`` did."""

from rllib_sit.data import column_cache
from rllib_sit.data.episode_store import EpisodeStore


def test_open_fingerprints_once_and_reports_the_folder_it_opened(dataset, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    first = EpisodeStore.open(dataset, cache_root=str(root))  # builds the cache
    calls = []
    real = column_cache.fingerprint
    monkeypatch.setattr(column_cache, "fingerprint", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = EpisodeStore.open(dataset, cache_root=str(root))
    assert len(calls) == 1
    assert again.cache_dir == first.cache_dir
    assert again.cache_dir == str(column_cache.cache_dir_for(dataset, list(first.columns), str(root)))
    assert sorted(again.columns) == sorted(first.columns)
