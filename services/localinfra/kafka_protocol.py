"""Kafka admin requests aiokafka lacks: SCRAM credentials (AlterUserScramCredentials) and ACLs (Create/Describe/DeleteAcls)."""

# aiokafka ships no type hints, so each struct below subclasses an untyped base (hence the `type: ignore[misc]`).
# Field layouts follow the request/response JSON specs in Kafka's clients/src/main/resources/common/message.

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.protocol.api import RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields

from services.localinfra.procs import LocalInfraError

_TEXT = CompactString("utf-8")
_TAGS = ("tags", TaggedFields)
# One ACL filter (DescribeAcls body, DeleteAcls entry): null name/principal/host match anything.
_FILTER = (
    ("resource_type", Int8),
    ("resource_name", _TEXT),
    ("pattern_type", Int8),
    ("principal", _TEXT),
    ("host", _TEXT),
    ("operation", Int8),
    ("permission_type", Int8),
)
_RESULT = (("error_code", Int16), ("error_message", _TEXT))


class AlterUserScramCredentialsResponse(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(("throttle_time_ms", Int32), ("results", CompactArray(("user", _TEXT), *_RESULT, _TAGS)), _TAGS)


class AlterUserScramCredentialsRequest(RequestStruct):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = AlterUserScramCredentialsResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", _TEXT), ("mechanism", Int8), _TAGS)),
        (
            "upsertions",
            CompactArray(
                ("name", _TEXT),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                _TAGS,
            ),
        ),
        _TAGS,
    )


class CreateAclsResponse(Response):  # type: ignore[misc]
    API_KEY = 30
    API_VERSION = 2
    SCHEMA = Schema(("throttle_time_ms", Int32), ("results", CompactArray(*_RESULT, _TAGS)), _TAGS)


class CreateAclsRequest(RequestStruct):  # type: ignore[misc]
    API_KEY = 30
    API_VERSION = 2
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = CreateAclsResponse
    SCHEMA = Schema(("creations", CompactArray(*_FILTER, _TAGS)), _TAGS)


class DescribeAclsResponse(Response):  # type: ignore[misc]
    API_KEY = 29
    API_VERSION = 2
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        *_RESULT,
        (
            "resources",
            CompactArray(
                ("resource_type", Int8),
                ("resource_name", _TEXT),
                ("pattern_type", Int8),
                (
                    "acls",
                    CompactArray(("principal", _TEXT), ("host", _TEXT), ("operation", Int8), ("permission_type", Int8), _TAGS),
                ),
                _TAGS,
            ),
        ),
        _TAGS,
    )


class DescribeAclsRequest(RequestStruct):  # type: ignore[misc]
    API_KEY = 29
    API_VERSION = 2
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = DescribeAclsResponse
    SCHEMA = Schema(*_FILTER, _TAGS)


class DeleteAclsResponse(Response):  # type: ignore[misc]
    API_KEY = 31
    API_VERSION = 2
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("filter_results", CompactArray(*_RESULT, ("matching_acls", CompactArray(*_RESULT, *_FILTER, _TAGS)), _TAGS)),
        _TAGS,
    )


class DeleteAclsRequest(RequestStruct):  # type: ignore[misc]
    API_KEY = 31
    API_VERSION = 2
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = DeleteAclsResponse
    SCHEMA = Schema(("filters", CompactArray(*_FILTER, _TAGS)), _TAGS)


@dataclass(frozen=True)
class Call:
    """One request at one fixed version, in the shape aiokafka's connection sends (it calls `prepare`)."""

    struct: Any

    def prepare(self, versions: dict[int, tuple[int, int]]) -> Any:
        api_key, version = self.struct.API_KEY, self.struct.API_VERSION
        low, high = versions.get(api_key, (0, -1))
        if not low <= version <= high:
            name = type(self.struct).__name__.removesuffix("Request")
            offered = f"v{low}-v{high}" if high >= low else "none"
            raise LocalInfraError(f"this Kafka does not support {name} v{version} (it offers {offered}); Kafka 2.8+ is needed")
        return self.struct


def alter_user_scram_credentials(upsertions: list[tuple[str, int, int, bytes, bytes]]) -> Call:
    """Upsert (name, mechanism, iterations, salt, salted password) credentials; deletes nothing."""
    return Call(AlterUserScramCredentialsRequest([], [(*u, {}) for u in upsertions], {}))


def create_acls(bindings: list[tuple[int, str, int, str, str, int, int]]) -> Call:
    return Call(CreateAclsRequest([(*b, {}) for b in bindings], {}))


def describe_acls(binding_filter: tuple[int, str | None, int, str | None, str | None, int, int]) -> Call:
    return Call(DescribeAclsRequest(*binding_filter, {}))


def delete_acls(filters: list[tuple[int, str | None, int, str | None, str | None, int, int]]) -> Call:
    return Call(DeleteAclsRequest([(*f, {}) for f in filters], {}))
