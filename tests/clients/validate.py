"""Validates recorded answers against seatflow's OpenAPI document (openapi-core): each answer's
status must be documented for its operation, its media type declared, its body valid against
the schema (types, formats, required fields, no null where none is declared).

    validate.py <openapi.json> <exchanges.jsonl>...
"""

import json
import sys
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

document = json.load(open(sys.argv[1]))
api = OpenAPI.from_dict(document)

failures, statuses = [], Counter()
for path in sys.argv[2:]:
    for number, line in enumerate(open(path), 1):
        exchange = json.loads(line)
        url = urlsplit(exchange["url"])
        request = MockRequest(
            f"{url.scheme}://{url.netloc}",
            exchange["method"].lower(),
            url.path,
            args=dict(parse_qsl(url.query)),
            content_type=exchange["requestContentType"] or "application/json",
        )
        response = MockResponse(
            exchange["body"].encode(),
            status_code=exchange["status"],
            content_type=exchange["contentType"] or "",
        )
        statuses[exchange["status"]] += 1
        try:
            api.validate_response(request, response)
        except Exception as e:  # every kind of mismatch is a failure to report
            detail = getattr(e, "__cause__", None) or e
            failures.append(f"{path}:{number}: {exchange['method']} {url.path} -> "
                            f"{exchange['status']}: {type(e).__name__}: {detail}\n    {exchange['body'][:300]}")

answers = sum(statuses.values())
print(f"validated {answers} answers against the document; statuses {dict(sorted(statuses.items()))}",
      file=sys.stderr)
if failures:
    print(f"{len(failures)} of {answers} answers do not match the document:", file=sys.stderr)
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
