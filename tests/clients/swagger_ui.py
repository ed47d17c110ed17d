"""Checks the page Swagger UI rendered (headless Chromium's --dump-dom of /docs): every operation
of the document is shown, under its tag and by its operationId (Swagger UI's element ids are
`operations-<tag>-<operationId>`), with its path.

    swagger_ui.py <openapi.json> <docs.html>
"""

import json
import re
import sys
from html import unescape

document = json.load(open(sys.argv[1]))
dom = open(sys.argv[2]).read()

expected = {
    (operation["tags"][0], operation["operationId"], path)
    for path, item in document["paths"].items()
    for operation in item.values()
}
rendered_ids = set(re.findall(r'<div class="opblock [^"]*" id="operations-([^"]+)"', dom))
rendered_paths = {unescape(p) for p in re.findall(r'data-path="([^"]+)"', dom)}
missing = sorted(
    (tag, operation_id, path)
    for tag, operation_id, path in expected
    if f"{tag}-{operation_id}" not in rendered_ids or path not in rendered_paths
)
print(f"Swagger UI renders {len(rendered_ids)} operations; the document has {len(expected)}",
      file=sys.stderr)
if missing or not expected:
    print(f"not rendered: {missing}", file=sys.stderr)
    sys.exit(1)
