"""SessionRegistry: one live connection per session ID; a new login closes the old one."""

from __future__ import annotations

from onehop.server.sessions import SessionRegistry


class Closer:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_first_registration_closes_nothing():
    registry, first = SessionRegistry(), Closer()
    registry.register("s1", first)
    assert len(registry) == 1 and first.calls == 0


def test_registering_an_existing_id_closes_the_previous_connection_once():
    registry, old, new = SessionRegistry(), Closer(), Closer()
    registry.register("s1", old)
    registry.register("s1", new)
    assert old.calls == 1 and new.calls == 0
    assert len(registry) == 1


def test_other_sessions_are_untouched():
    registry, a, b = SessionRegistry(), Closer(), Closer()
    registry.register("a", a)
    registry.register("b", b)
    registry.register("b", Closer())
    assert a.calls == 0 and b.calls == 1 and len(registry) == 2


def test_unregister_with_the_stale_closer_keeps_the_new_connection():
    registry, old, new = SessionRegistry(), Closer(), Closer()
    registry.register("s1", old)
    registry.register("s1", new)
    registry.unregister("s1", old)       # the replaced connection finishes closing
    assert len(registry) == 1
    registry.register("s1", Closer())   # so a third login still closes ``new``
    assert new.calls == 1


def test_unregister_with_the_current_closer_removes_it():
    registry, closer = SessionRegistry(), Closer()
    registry.register("s1", closer)
    registry.unregister("s1", closer)
    assert len(registry) == 0
    registry.register("s1", Closer())
    assert closer.calls == 0  # nothing left to close


def test_unregister_unknown_id_is_harmless():
    registry = SessionRegistry()
    registry.unregister("nobody", Closer())
    assert len(registry) == 0


def test_closer_that_unregisters_itself_does_not_remove_the_new_session():
    registry = SessionRegistry()

    def old() -> None:
        registry.unregister("s1", old)  # what a connection's close path does

    registry.register("s1", old)
    new = Closer()
    registry.register("s1", new)
    assert len(registry) == 1
    registry.register("s1", Closer())
    assert new.calls == 1
