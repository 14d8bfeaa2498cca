"""The agent's on-disk spool, without a server."""

import pytest

from veritas_grpc.agent.spool import Spool, SpoolInUse, StoredTokens


def test_events_survive_reopening_in_order(tmp_path):
    spool = Spool(tmp_path / "s", max_events=10)
    for n in range(3):
        assert spool.add(f"e{n}".encode(), float(n))
    spool.close()  # as after a SIGKILL: every add was its own commit
    reopened = Spool(tmp_path / "s", max_events=10)
    assert reopened.count == 3
    assert [e.event for e in reopened.oldest(10)] == [b"e0", b"e1", b"e2"]


def test_a_full_spool_refuses_new_events_and_keeps_the_old(tmp_path):
    spool = Spool(tmp_path / "s", max_events=2)
    assert spool.add(b"a", 0) and spool.add(b"b", 0)
    assert not spool.add(b"c", 0)
    assert [e.event for e in spool.oldest(10)] == [b"a", b"b"]
    spool.remove([spool.oldest(1)[0].seq])
    assert spool.count == 1 and spool.add(b"d", 0)


def test_removing_answered_events(tmp_path):
    spool = Spool(tmp_path / "s", max_events=2000)
    for n in range(1200):
        spool.add(str(n).encode(), 0)
    batch = spool.oldest(1000)
    spool.remove([e.seq for e in batch[::2]])
    assert spool.count == 700
    assert spool.oldest(1)[0].event == b"1"


def test_one_agent_per_spool(tmp_path):
    spool = Spool(tmp_path / "s", max_events=1)
    with pytest.raises(SpoolInUse):
        Spool(tmp_path / "s", max_events=1)
    spool.close()
    Spool(tmp_path / "s", max_events=1).close()


def test_tokens_are_kept_and_the_file_is_private(tmp_path):
    spool = Spool(tmp_path / "s", max_events=1)
    assert spool.tokens() is None
    spool.save_tokens(StoredTokens("o", "a1", "r1", 1.0, 900.0))
    spool.save_tokens(StoredTokens("o", "a2", "r2", 2.0, 900.0))
    spool.close()
    assert Spool(tmp_path / "s", max_events=1).tokens() == StoredTokens("o", "a2", "r2", 2.0, 900.0)
    assert (tmp_path / "s").stat().st_mode & 0o077 == 0
