"""UserRepository.search on a database of its own: a text whose matches cluster at the
end of the e-mail order (every e-mail begins with a first name) is answered from the
trigram indexes once the bounded walk of the e-mail order finds too few, and gives the
same pages as a walk would."""

from __future__ import annotations

import uuid

import pytest

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.db.models import StudentProfile, User
from veritas_grpc.repositories import users as users_module
from veritas_grpc.repositories.users import UserRepository

FIRST_NAMES = ["ada", "alan", "barbara", "grace", "xavier", "yukihiro"]


@pytest.fixture(scope="module")
def accounts(fresh_database):
    """6 first names × 5 accounts, e-mails `first.n@uni.edu`; students have an
    enrollment id `E-<first>-<n>`, and alan.2's enrollment id mentions xavier."""
    url = fresh_database("user_search")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        for first in FIRST_NAMES:
            for n in range(5):
                user = User(
                    id=uuid.uuid4(),
                    email=f"{first}.{n}@uni.edu",
                    password_hash="!",
                    full_name=f"{first.title()} Number{n}",
                    role="student" if n < 4 else "teacher",
                    is_active=n != 3,
                )
                session.add(user)
                session.flush()
                if n < 4:
                    enrollment = "E-xavier-fan" if (first, n) == ("alan", 2) else f"E-{first}-{n}"
                    session.add(StudentProfile(user_id=user.id, enrollment_id=enrollment))
    yield factory
    engine.dispose()


def _emails(factory, **search) -> list[str]:
    arguments = {"role": None, "active": None, "text": None, "after_email": None, "limit": 4}
    arguments.update(search)
    with factory() as session:
        return [user.email for user in UserRepository(session).search(**arguments)]


def _all_pages(factory, **search) -> list[str]:
    pages, after = [], None
    while True:
        page = _emails(factory, after_email=after, **search)
        pages += page
        if len(page) < search.get("limit", 4):
            return pages
        after = page[-1]


@pytest.mark.parametrize("read_limit", [1, 3, 7, 1000])
def test_a_clustered_text_gives_the_same_pages_however_far_the_walk_reads(
    accounts, monkeypatch, read_limit
):
    monkeypatch.setattr(users_module, "SEARCH_READ_LIMIT", read_limit)
    assert _all_pages(accounts, text="XAVIER") == [
        "alan.2@uni.edu",  # by its enrollment id
        *[f"xavier.{n}@uni.edu" for n in range(5)],
    ]
    assert _all_pages(accounts, text="uni.edu") == sorted(
        f"{first}.{n}@uni.edu" for first in FIRST_NAMES for n in range(5)
    )
    assert _all_pages(accounts, text="Number2", role="student", active=True) == [
        f"{first}.2@uni.edu" for first in FIRST_NAMES
    ]
    assert _all_pages(accounts, text="yuki", active=False) == ["yukihiro.3@uni.edu"]
    assert _all_pages(accounts, text="nobody") == []
    assert _all_pages(accounts, text="E-A") == [  # enrollment ids: alan.2's is E-xavier-fan
        *[f"ada.{n}@uni.edu" for n in range(4)],
        *[f"alan.{n}@uni.edu" for n in (0, 1, 3)],
    ]


def test_an_account_matching_both_ways_is_listed_once(accounts, monkeypatch):
    monkeypatch.setattr(users_module, "SEARCH_READ_LIMIT", 2)
    assert _emails(accounts, text="grace", limit=10) == [f"grace.{n}@uni.edu" for n in range(5)]


def test_no_text_lists_in_email_order_after_the_cursor(accounts):
    assert _emails(accounts, after_email="xavier.4@uni.edu", role="student") == [
        f"yukihiro.{n}@uni.edu" for n in range(4)
    ]
