#!/usr/bin/env python3
"""Validates Kubernetes and Istio manifests offline; run by tests/deploy_manifests.rs.

Usage: validate_manifests.py FILE...

Every YAML document in every FILE must validate, or the script exits 1:
  - Kubernetes kinds against the Kubernetes OpenAPI schemas shipped by the
    kubernetes-validate package, strictly (unknown fields fail);
  - security.istio.io/v1 AuthorizationPolicy, install.istio.io/v1alpha1 IstioOperator
    and kind.x-k8s.io/v1alpha4 Cluster against the JSON schemas in deploy/schemas/;
  - Istio mesh config (IstioOperator spec.meshConfig, and the `mesh` key of the `istio`
    ConfigMap in istio-system) against deploy/schemas/meshconfig.istio.io-v1alpha1.json.
A document of any other kind, one without a schema, fails.
"""

import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "schemas"
KUBERNETES_VERSION = "1.33.0"
REPO_SCHEMAS = {
    ("security.istio.io/v1", "AuthorizationPolicy"): "authorizationpolicy.security.istio.io-v1.json",
    ("install.istio.io/v1alpha1", "IstioOperator"): "istiooperator.install.istio.io-v1alpha1.json",
    ("kind.x-k8s.io/v1alpha4", "Cluster"): "cluster.kind.x-k8s.io-v1alpha4.json",
}
MESH_CONFIG = "meshconfig.istio.io-v1alpha1.json"


def schema_errors(document, schema_file):
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def validate(document):
    """The list of problems of one document (empty when it is valid)."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in REPO_SCHEMAS:
        errors = schema_errors(document, REPO_SCHEMAS[key])
        if key[1] == "IstioOperator" and not errors:
            mesh = document["spec"].get("meshConfig", {})
            errors += [f"spec.meshConfig.{e}" for e in schema_errors(mesh, MESH_CONFIG)]
        return errors
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]}"]
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(str(p) for p in error.path) or '<root>'}: {error.message}"]
    metadata = document.get("metadata", {})
    if (
        key == ("v1", "ConfigMap")
        and metadata.get("name") == "istio"
        and metadata.get("namespace") == "istio-system"
    ):
        mesh = yaml.safe_load(document.get("data", {}).get("mesh", "")) or {}
        return [f"data.mesh.{e}" for e in schema_errors(mesh, MESH_CONFIG)]
    return []


def main(paths):
    failed = False
    for path in paths:
        documents = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
        if not documents:
            print(f"FAIL {path}: no YAML documents")
            failed = True
        for document in documents:
            name = document.get("metadata", {}).get("name") or document.get("name", "?")
            what = f"{path}: {document.get('kind')}/{name}"
            errors = validate(document)
            for error in errors:
                print(f"FAIL {what}: {error}")
            if errors:
                failed = True
            else:
                print(f"ok   {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
