"""The real objects the fuzzed requests point at, and the signed-in callers.

A teacher's published exam (open now) and a draft, a student's attempt in progress
with an event, and an account of every role. The fuzzer may use them up (submit the
attempt, archive the exam, log a caller out): after such calls a fresh exam and
attempt are made, and a caller whose session ended signs in again, so the rest of the
run still reaches the code behind the checks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import grpc
from hypothesis import strategies as st
from veritas.v1 import auth_pb2, common_pb2, student_pb2, teacher_pb2

from tests.e2e.conftest import SignedIn, login, register_and_login
from tests.e2e.exam_helpers import exam_message, open_window, published_exam, start, stubs
from tests.e2e.monitoring_helpers import event, stream
from tests.fuzz.checks import Database
from tests.fuzz.rpcs import Answer, Rpc
from tests.fuzz.strategies import RealObjects, Templates
from tests.support import PASSWORD, unique_email, unique_enrollment
from veritas_grpc.domain.identity import Role
from veritas_grpc.security import policy
from veritas_grpc.services.accounts import AccountService

NO_TOKEN = "no token"
GARBAGE_TOKEN = "a garbage token"
CALLERS: tuple[Role | str, ...] = (NO_TOKEN, GARBAGE_TOKEN, *Role)
# Header values a client may send beside its token: the server logs a client's
# x-request-id (never uses it) and reads forwarded addresses only from trusted proxies.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64)
EXTRA_HEADERS = st.lists(
    st.tuples(st.sampled_from(["x-request-id", "x-forwarded-for", "x-real-ip"]), HEADER_TEXT),
    max_size=2,
)


def callers_for(rpc: Rpc) -> st.SearchStrategy[Role | str]:
    """Every caller, those the contract admits three times as often: the role sweep
    already shows that the others are refused, the fuzzer is for what comes after."""
    entry = policy.POLICY.get(rpc.path, frozenset())
    admitted = list(CALLERS) if entry == policy.PUBLIC else [r for r in Role if r in entry]
    return st.sampled_from([*CALLERS, *admitted, *admitted, *admitted])


LOGOUT = "/veritas.v1.AuthService/Logout"
# How many calls pass between checks that the attempt is still in progress.
RESTOCK_EVERY = 25
KEEP_IDS = 4


class World(RealObjects):
    def __init__(
        self,
        channel: grpc.Channel,
        auth_stub,
        accounts: AccountService,
        database: Database,
    ) -> None:
        self._channel = channel
        self._auth_stub = auth_stub
        self._database = database
        self._student_stub, self._teacher_stub = stubs(channel)
        self._accounts = accounts
        self._replaced = False
        self.signed_in: dict[Role, SignedIn] = {
            role: self._new_account(role) for role in Role if role is not Role.STUDENT
        }
        self.signed_in[Role.STUDENT] = register_and_login(auth_stub)
        # Ids by kind: the accounts' and the draft's for good, the latest few of the
        # exams, attempts and events that restock() makes.
        self._lasting: dict[str, list[str]] = {
            role.value.lower(): [account.user_id] for role, account in self.signed_in.items()
        }
        draft = self._teacher_stub.CreateExam(
            teacher_pb2.CreateExamRequest(exam=exam_message()), metadata=self._as(Role.TEACHER)
        ).exam
        self._lasting["exam"] = [draft.id]
        self._latest: dict[str, list[str]] = {"exam": [], "attempt": [], "event": []}
        self._calls = 0
        self.restock()

    def _new_account(self, role: Role) -> SignedIn:
        """An account made as an operator would (`make_account` of the e2e tests is
        per test; this world lasts the session)."""
        email = unique_email(role.value)
        enrollment = unique_enrollment() if role is Role.STUDENT else None
        self._accounts.create_account(role, email, PASSWORD, f"Fuzz {role.value}", enrollment)
        return login(self._auth_stub, email)

    # RealObjects: what the strategies draw from ------------------------------------

    def ids(self, kind: str) -> Sequence[str]:
        kind = "teacher" if kind == "creator" else kind
        if kind in self._lasting or kind in self._latest:
            return [*self._lasting.get(kind, ()), *self._latest.get(kind, ())]
        return [value for kind in {*self._lasting, *self._latest} for value in self.ids(kind)]

    def emails(self) -> Sequence[str]:
        return [account.email for account in self.signed_in.values()]

    def templates(self) -> Templates:
        """Valid examples of the messages that are hard to hit at random."""
        latest = self._latest
        return {
            "veritas.v1.MonitoringEvent": lambda: st.uuids().map(
                lambda event_id: event(latest["attempt"][-1], event_id=str(event_id))
            ),
            "veritas.v1.Exam": lambda: st.builds(lambda: exam_message(**open_window())),
        }

    # Callers ----------------------------------------------------------------------

    def metadata(self, caller: Role | str) -> tuple:
        if caller == NO_TOKEN:
            return ()
        if caller == GARBAGE_TOKEN:
            return (("authorization", "Bearer not.a.token"),)
        return self._as(Role(caller))

    def _as(self, role: Role) -> tuple:
        return self.signed_in[role].metadata

    def after_call(self, rpc: Rpc, caller: Role | str, answer: Answer) -> None:
        """Sign a caller in again when its session ended; replace used-up objects."""
        if isinstance(caller, Role):
            public = policy.POLICY.get(rpc.path) == policy.PUBLIC
            logged_out = rpc.path == LOGOUT and answer.code is grpc.StatusCode.OK
            refused = answer.code is grpc.StatusCode.UNAUTHENTICATED and not public
            if logged_out or refused:
                self.sign_in_again(caller)
        self._calls += 1
        used_up = self._calls % RESTOCK_EVERY == 0 and not self._attempt_in_progress()
        if used_up or self._replaced:
            self.restock()

    def sign_in_again(self, role: Role) -> None:
        """A new session for the role's account, or a new account when the fuzzer (as
        an admin) deactivated, erased or changed the old one."""
        self._database.forget_sign_in_failures()
        try:
            signed_in = login(self._auth_stub, self.signed_in[role].email)
            still_the_role = self._role_of(signed_in) == role
        except grpc.RpcError:
            still_the_role = False
        if not still_the_role:
            signed_in = self._new_account(role)
            self._lasting[role.value.lower()].append(signed_in.user_id)
            self._replaced = True
        self.signed_in[role] = signed_in

    def _role_of(self, signed_in: SignedIn) -> Role:
        user = self._auth_stub.GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=signed_in.metadata
        ).user
        return Role[common_pb2.Role.Name(user.role).removeprefix("ROLE_")]

    # Objects ----------------------------------------------------------------------

    def _attempt_in_progress(self) -> bool:
        request = student_pb2.GetAttemptRequest(attempt_id=self._latest["attempt"][-1])
        try:
            attempt = self._student_stub.GetAttempt(request, metadata=self._as(Role.STUDENT))
        except grpc.RpcError:
            return False
        return attempt.attempt.status == common_pb2.ATTEMPT_STATUS_IN_PROGRESS

    def restock(self) -> None:
        """A fresh published exam, the student's attempt at it and one stored event."""
        for role in (Role.TEACHER, Role.STUDENT):
            self.sign_in_again(role)
        self._replaced = False
        exam = published_exam(self._teacher_stub, self._as(Role.TEACHER), **open_window())
        student = self.signed_in[Role.STUDENT]
        attempt = start(self._student_stub, student, exam.id)
        stored = event(attempt.id, event_id=str(uuid.uuid4()))
        answer = stream(self._channel, student.metadata, [[stored]])
        assert answer.accepted_count == 1, answer
        for kind, value in (("exam", exam.id), ("attempt", attempt.id), ("event", stored.event_id)):
            self._latest[kind] = [*self._latest[kind], value][-KEEP_IDS:]
