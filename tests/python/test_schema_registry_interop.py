"""Confluent's own Schema Registry client (confluent-kafka[schemaregistry]) against Strata's
`/registry`: register, read back, test compatibility, set a level, errors with Confluent's
codes — then an event that breaks the registered schema is refused by the collector with the
JSON pointer of the violation."""

import base64
import json
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from conftest import WRITE_KEY

V1 = {
    "type": "object",
    "required": ["post_id"],
    "properties": {"post_id": {"type": "integer"}, "feed": {"type": "string"}},
}
# A new required property: not BACKWARD compatible.
V2 = {
    "type": "object",
    "required": ["post_id", "position"],
    "properties": {
        "post_id": {"type": "integer"},
        "feed": {"type": "string"},
        "position": {"type": "integer"},
    },
}


def post_batch(url, events):
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    req = urllib.request.Request(
        url + "/v1/batch",
        data=json.dumps({"batch": events}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read())


def test_confluent_client_against_strata_registry(strata):
    token = strata.cli("tokens", "create", "sr", "--scope", "admin", "-c", strata.config).stdout.strip()
    client = SchemaRegistryClient(
        {"url": strata.url + "/registry", "basic.auth.user.info": f"sr:{token}"}
    )

    schema_id = client.register_schema("Post Clicked", Schema(json.dumps(V1), "JSON"))
    assert schema_id == 1
    assert client.get_subjects() == ["Post Clicked"]
    assert client.get_versions("Post Clicked") == [1]
    latest = client.get_latest_version("Post Clicked")
    assert (latest.version, latest.schema_id) == (1, 1)
    assert latest.schema.schema_type == "JSON"
    assert json.loads(latest.schema.schema_str) == V1
    assert json.loads(client.get_schema(1).schema_str) == V1

    assert client.test_compatibility("Post Clicked", Schema(json.dumps(V2), "JSON")) is False
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("Post Clicked", Schema(json.dumps(V2), "JSON"))
    assert (e.value.http_status_code, e.value.error_code) == (409, 409)

    client.set_compatibility("Post Clicked", "NONE")
    assert client.get_compatibility("Post Clicked") == "NONE"
    assert client.register_schema("Post Clicked", Schema(json.dumps(V2), "JSON")) == 2

    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("Other", Schema(json.dumps({"anyOf": [{"type": "object"}]}), "JSON"))
    assert e.value.error_code == 42201
    assert "anyOf" in e.value.error_message

    # A token without the admin scope cannot register.
    reader = strata.cli("tokens", "create", "r", "--scope", "catalog:read", "-c", strata.config).stdout.strip()
    weak = SchemaRegistryClient({"url": strata.url + "/registry", "basic.auth.user.info": f"r:{reader}"})
    with pytest.raises(SchemaRegistryError) as e:
        weak.register_schema("Post Viewed", Schema(json.dumps(V1), "JSON"))
    assert e.value.error_code == 40301

    # The collector enforces version 2 at once.
    answer = post_batch(
        strata.url,
        [
            {"type": "track", "event": "Post Clicked", "userId": "u1", "messageId": "ok",
             "properties": {"post_id": 1, "position": 2}},
            {"type": "track", "event": "Post Clicked", "userId": "u1", "messageId": "bad",
             "properties": {"post_id": 1}},
        ],
    )
    assert (answer["accepted"], answer["rejected"]) == (1, 1), answer
    assert answer["errors"][0]["reason"] == (
        "schema violation (Post Clicked v2): /properties/position: required property is missing"
    )
