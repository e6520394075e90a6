"""Checks recorded webhook deliveries with independent implementations:
each signature with the Standard Webhooks reference library (PyPI
`standardwebhooks`), each body against the published JSON Schema with
`jsonschema`.

Input (stdin): {"schema": PATH, "deliveries": [{"secret": "whsec_...",
"headers": {...}, "body": "..."}]}. Output: one JSON line per delivery,
{"ok": bool, "error": str}.
"""
import json
import sys

import jsonschema
from standardwebhooks.webhooks import Webhook

req = json.load(sys.stdin)
with open(req["schema"]) as f:
    schema = json.load(f)
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
for d in req["deliveries"]:
    try:
        Webhook(d["secret"]).verify(d["body"], d["headers"])
        errors = sorted(validator.iter_errors(json.loads(d["body"])), key=str)
        if errors:
            raise ValueError("schema: " + "; ".join(
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors))
        print(json.dumps({"ok": True, "error": ""}))
    except Exception as e:  # noqa: BLE001 - reported to the test
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
