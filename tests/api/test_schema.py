"""The OpenAPI schema validates with no warning and documents every route, body and error."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema(tmp_path_factory: Any) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("schema") / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def test_every_route_is_in_the_schema_with_its_errors(schema: dict[str, Any]) -> None:
    from tests.api.test_permissions import ROUTES

    paths = schema["paths"]
    for _name, pattern, method in ROUTES:
        path = "/api/v1/" + pattern.replace("<str:id>", "{id}")
        assert path in paths, path
        operation = paths[path][method]
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), (path, method)
        for code in ("429",):
            assert code in responses, (path, method, code)
        errors = [c for c in responses if c[0] in "45"]
        assert errors and all("application/problem+json" in responses[c]["content"] for c in errors), (path, method)
        if "{id}" in path:
            param = next(p for p in operation["parameters"] if p["name"] == "id")
            assert param["schema"]["format"] == "uuid"


def test_docs_are_served_without_a_cdn(client: Any) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert b"cdn.jsdelivr" not in page.content and b"unpkg.com" not in page.content
    assert client.get("/api/schema/").status_code == 200
