"""Checks answers of the query API against docs/api/openapi.yaml.

argv: SPEC ANSWERS. ANSWERS is a JSON list of {"path": template as in the
spec, "status": int, "body": JSON}. The spec itself is validated as
OpenAPI 3.1 (openapi-spec-validator); each body against the schema the
spec gives for its path and status (jsonschema, draft 2020-12, which
OpenAPI 3.1 schemas are). Prints every mismatch and exits 1 if any."""

import json
import sys
from urllib.parse import quote

import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

spec_path, answers_path = sys.argv[1:3]
with open(spec_path) as f:
    spec = yaml.safe_load(f)
validate(spec)
with open(answers_path) as f:
    answers = json.load(f)

BASE = "urn:sidetrace-openapi"
registry = Registry().with_resource(BASE, Resource.from_contents(spec, default_specification=DRAFT202012))


def pointer(*parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


problems = []
for answer in answers:
    path, status, body = answer["path"], str(answer["status"]), answer["body"]
    operation = spec["paths"].get(path, {}).get("get")
    if operation is None:
        problems.append(f"{path}: not in the spec")
        continue
    where = ["paths", path, "get", "responses", status]
    response = operation["responses"].get(status)
    if response is None:
        problems.append(f"{path}: status {status} is not documented")
        continue
    if "$ref" in response:
        ref = response["$ref"]
        where = ref.lstrip("#/").split("/")
    schema_ref = BASE + "#" + quote(pointer(*where, "content", "application/json", "schema"), safe="/~")
    validator = Draft202012Validator({"$ref": schema_ref}, registry=registry)
    for error in validator.iter_errors(body):
        location = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{path} {status} at /{location}: {error.message}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{len(answers)} answers match the spec")
