"""Every Kafka client finsent creates goes through services.broker.clients (and so gets the
configured TLS/SASL): constructing one anywhere else in services/, dashboards/, bert_core/ or
benchmarks/ fails.

Checked on the syntax tree, so aliases (`import kafka as k; k.KafkaProducer(...)`), faust.App
subclasses defined anywhere and clients built inside functions are all caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ROOT / "services" / "broker" / "clients.py"
CLIENT_CLASSES = {
    "KafkaProducer",
    "KafkaConsumer",
    "KafkaAdminClient",
    "KafkaClient",
    "SimpleClient",
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaClient",
    "App",  # faust.App
}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _sources() -> list[Path]:
    folders = ("services", "dashboards", "bert_core", "benchmarks")
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def _app_subclasses(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of classes deriving (directly or not) from faust.App or another client class."""
    names = set(CLIENT_CLASSES)
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in names
                    and any(_name(base) in names for base in node.bases)
                ):
                    names.add(node.name)
                    grew = True
    return names


def client_constructions(trees: dict[Path, ast.Module]) -> list[str]:
    forbidden = _app_subclasses(trees)
    found = []
    for path, tree in trees.items():
        if path == ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node.func)}(...)")
    return found


def test_kafka_clients_are_built_only_in_services_broker_clients() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in _sources()}
    assert client_constructions(trees) == []


def test_the_check_catches_a_direct_client_and_a_faust_app_subclass() -> None:
    """The scan itself: it must flag what it is meant to flag (else the test above proves nothing)."""
    sneaky = ast.parse(
        "import kafka as k\n"
        "import faust\n"
        "class MyApp(faust.App): ...\n"
        "class Mine(MyApp): ...\n"
        "def f():\n"
        "    k.KafkaConsumer(bootstrap_servers='x')\n"
        "    Mine('id')\n"
    )
    path = ROOT / "services" / "sneaky.py"
    assert client_constructions({path: sneaky}) == [
        "services/sneaky.py:6: k.KafkaConsumer(...)",
        "services/sneaky.py:7: Mine(...)",
    ]


def test_every_client_kind_is_built_through_the_module() -> None:
    """The clients module still builds what the services need (guards against an empty ALLOWED)."""
    tree = ast.parse(ALLOWED.read_text(encoding="utf-8"))
    called = {_name(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "app_class"} <= called


@pytest.mark.parametrize("bootstrap", ["localhost:abc", ["127.0.0.1:9092", "host:1:extra"]])
def test_bad_bootstrap_servers_are_a_broker_error_not_a_value_error(bootstrap: str | list[str]) -> None:
    """FINSENT_KAFKA_BOOTSTRAP is checked with the settings; servers given any other way are
    checked here, before kafka-python's int() of the port raises a bare ValueError."""
    from services.broker import BrokerError
    from services.broker.clients import kafka_admin, kafka_consumer, kafka_producer
    from services.broker.security import KafkaSecurity

    plain = KafkaSecurity()
    for make in (
        lambda: kafka_admin(bootstrap, security=plain),
        lambda: kafka_producer(bootstrap, security=plain),
        lambda: kafka_consumer(bootstrap=bootstrap, security=plain),
    ):
        with pytest.raises(BrokerError, match=r"is not a number from 1 to 65535|has more than one ':'"):
            make()
