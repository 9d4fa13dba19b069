"""The relay's partitioner: the Java client's murmur2, equal to aiokafka's, so a listing keeps its partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from services.publishers.partitioner import murmur2, partition_of

# Kafka's own UtilsTest.testMurmur2 (signed Java ints): a hash the Java client computes for the same bytes.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_matches_the_java_clients_published_vectors() -> None:
    assert {data: murmur2(data) for data in JAVA_VECTORS} == {data: h & 0xFFFFFFFF for data, h in JAVA_VECTORS.items()}


@given(st.binary(max_size=300))
def test_murmur2_equals_aiokafkas_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.text(min_size=1, max_size=120), st.integers(min_value=1, max_value=64))
def test_a_key_gets_the_partition_aiokafkas_send_would_give_it(key: str, count: int) -> None:
    partitions = list(range(count))
    assert partition_of(key.encode(), partitions) == DefaultPartitioner()(key.encode(), partitions, partitions)
