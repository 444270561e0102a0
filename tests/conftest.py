import pytest

from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker():
    """One real Kafka-protocol broker (Tansu, in memory) for every stream test of the session."""
    with EmbeddedBroker() as b:
        yield b
