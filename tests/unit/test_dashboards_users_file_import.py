"""What `finsent dashboard users import-file` adds: newcomers only, never a change to a stored user."""

from __future__ import annotations

from services.storage.dashboard_users import StoredDashboardUser, users_to_add


def user(name: str, role: str = "viewer") -> StoredDashboardUser:
    return StoredDashboardUser(name, role, "$2b$04$hash", None)


def test_only_names_not_stored_yet_are_added_in_file_order() -> None:
    fresh = users_to_add([user("carol"), user("alice", "admin"), user("bob")], existing=["alice"])
    assert [u.name for u in fresh] == ["carol", "bob"]


def test_importing_what_is_stored_adds_nobody() -> None:
    assert users_to_add([user("alice"), user("bob")], existing=["bob", "alice"]) == []


def test_a_name_twice_in_the_input_is_added_once() -> None:
    assert users_to_add([user("dora", "analyst"), user("dora", "admin")], existing=[]) == [
        user("dora", "analyst")
    ]
