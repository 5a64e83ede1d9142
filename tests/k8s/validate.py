"""Validates Kubernetes manifests against the Kubernetes 1.30 schemas with
kubernetes-validate in strict mode (unknown fields fail), resource by
resource: the items of a List are validated one by one (the command line
only warns about a List), and a pod with only a generateName is reported by
it (the command line's report needs a name). Custom resources
(Prometheus Operator, cert-manager) have no schema there: they are listed
as unchecked, not failed; any other kind without a schema fails.

usage: python validate.py FILE...   exit 0 when every resource passed
"""

import sys

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

VERSION = "1.30.0"
CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")


def resources(path):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            if doc.get("kind") == "List":
                yield from doc.get("items") or []
            else:
                yield doc


failed = 0
checked = 0
for path in sys.argv[1:]:
    for r in resources(path):
        meta = r.get("metadata") or {}
        name = f"{path}: {r.get('kind')}/{meta.get('name') or meta.get('generateName', '?')}"
        try:
            kubernetes_validate.validate(r, VERSION, strict=True)
            checked += 1
            print(f"ok {name}")
        except SchemaNotFoundError:
            if str(r.get("apiVersion", "")).startswith(CRD_GROUPS):
                print(f"unchecked (custom resource, no schema in kubernetes-validate) {name}")
            else:
                print(f"FAIL {name}: no schema for {r.get('apiVersion')} {r.get('kind')}")
                failed += 1
        except ValidationError as e:
            print(f"FAIL {name}: {'.'.join(str(p) for p in e.path)}: {e.message}")
            failed += 1
print(f"{checked} resources valid, {failed} failed")
sys.exit(1 if failed or not checked else 0)
