"""Checks docker-compose.yml without a Docker engine (`make test-docker`; none can run where CHUM is
developed): against the Compose specification's JSON schema, then against what the README promises
of it. Usage: check-compose.py <compose-spec.json> <docker-compose.yml> <.env.example>

What it holds the file to, besides the schema:
- every published port is bound to 127.0.0.1;
- every image has an exact version tag (digits and dots; never `latest`), or is built here;
- the worker runs with `init: true`, a healthcheck, a `user:`, and is built from a Dockerfile here;
- a `service_healthy` dependency has a healthcheck to wait for;
- every bind mount's source is in this repository or is a variable, and no bind makes a missing
  host path (Docker would make an empty root-owned directory where a file was meant);
- every variable the file reads is documented in .env.example.
Each failure is printed with the service and key; the exit status is the number of failures (max 1).
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
EXACT_TAG = re.compile(r"^[^:@]+:v?\d+(\.\d+)+([-.][A-Za-z0-9.]+)*$")


def schema_draft(declared: str):
    """The validator of the draft the schema declares; the file writes its URI as
    https://json-schema.org/draft-07/schema, the draft's own id is http://...schema#."""
    for candidate in (declared, declared.replace("https://", "http://", 1)):
        for uri in (candidate, candidate.rstrip("#") + "#"):
            found = jsonschema.validators.validator_for({"$schema": uri}, default=None)
            if found is not None:
                return found
    sys.exit(f"the Compose schema declares {declared!r}, a JSON Schema draft jsonschema does not know")


def main(schema_path: str, compose_path: str, env_example_path: str) -> int:
    compose_file = Path(compose_path)
    text = compose_file.read_text()
    compose = yaml.safe_load(text)
    schema = json.loads(Path(schema_path).read_text())
    failures = []

    validator_class = schema_draft(schema.get("$schema", ""))
    validator_class.check_schema(schema)
    for error in sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(top level)"
        failures.append(f"schema: {where}: {error.message}")

    services = compose.get("services", {})
    for name, service in services.items():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published', '')}"
            if not str(published).startswith("127.0.0.1:"):
                failures.append(f"services.{name}.ports: {published!r} is not bound to 127.0.0.1")
        image = service.get("image")
        if "build" not in service:
            if image is None:
                failures.append(f"services.{name}: neither image nor build")
            elif not EXACT_TAG.match(image):
                failures.append(f"services.{name}.image: {image!r} has no exact version tag")
        for dependency, how in (service.get("depends_on") or {}).items():
            condition = how.get("condition") if isinstance(how, dict) else None
            if condition == "service_healthy" and "healthcheck" not in services.get(dependency, {}):
                failures.append(f"services.{name}.depends_on.{dependency}: waits for it to be healthy, but it has no healthcheck")
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":", 1)[0]
                if source.startswith((".", "/")):
                    failures.append(f"services.{name}.volumes: {volume!r}: the short form makes a missing host path a directory; use type: bind with bind.create_host_path: false")
                continue
            if volume.get("type") != "bind":
                continue
            if (volume.get("bind") or {}).get("create_host_path") is not False:
                failures.append(f"services.{name}.volumes: {volume.get('source')!r}: set bind.create_host_path: false")
            source = str(volume.get("source", ""))
            if not source.startswith("$") and not (compose_file.parent / source).exists():
                failures.append(f"services.{name}.volumes: {source!r} is not in the repository")

    worker = services.get("worker")
    if worker is None:
        failures.append("services.worker: missing")
    else:
        if worker.get("init") is not True:
            failures.append("services.worker.init: must be true (signals to the worker, orphans reaped)")
        if "healthcheck" not in worker:
            failures.append("services.worker.healthcheck: missing")
        if "user" not in worker:
            failures.append("services.worker.user: missing (the owner of the mounted repositories)")
        build = worker.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
        if not (compose_file.parent / context / dockerfile).is_file():
            failures.append(f"services.worker.build: no {dockerfile} in {context}")

    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", Path(env_example_path).read_text(), re.MULTILINE))
    for variable in sorted(set(VARIABLE.findall(text)) - documented):
        failures.append(f"${{{variable}}} is read by {compose_path} but not documented in {env_example_path}")

    for failure in failures:
        print(f"{compose_path}: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"{compose_path}: valid against the Compose specification ({len(services)} services); ports on 127.0.0.1, images pinned, every variable in {env_example_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
