"""A CloudEvents producer and consumer that no one here wrote: the CloudEvents Python SDK.

    python cloudevents_client.py send <gateway base URL>
        sends a structured, a binary and a batch request (the batch built from the SDK's own JSON
        of each event: the SDK has no batch writer) and prints the answers as JSON lines.
    python cloudevents_client.py parse <file of JSON events, one a line>
        parses each with the SDK's from_json and prints its attributes and data as JSON lines.
"""

import json
import sys
import urllib.error
import urllib.request

from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.http import from_json


def post(url, headers, body):
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"null")


def event(id_, subject):
    attributes = {"type": "orders.created", "source": "/py/shop", "id": id_, "subject": subject, "tenant": "acme",
                  "datacontenttype": "application/json"}
    return CloudEvent(attributes, {"orderId": subject, "total": 12.5})


def send(base):
    structured = http.to_structured_event(event("py-structured", "o-s"))
    print(json.dumps({"mode": "structured", "answer": post(base + "/cloudevents", structured.headers, structured.body)}))
    binary = http.to_binary_event(event("py-binary", "caf\u00e9 o-b"))
    answer = post(base + "/events/orders.created/trigger", binary.headers, binary.body)
    print(json.dumps({"mode": "binary", "answer": answer}))
    batch = b"[" + b",".join(JSONFormat().write(event(f"py-batch-{i}", f"o-{i}")) for i in (1, 2)) + b"]"
    answer = post(base + "/cloudevents", {"content-type": "application/cloudevents-batch+json"}, batch)
    print(json.dumps({"mode": "batch", "answer": answer}))
    # sent again: triggers nothing new, answers with the first receipt
    again = http.to_structured_event(event("py-structured", "o-s"))
    print(json.dumps({"mode": "again", "answer": post(base + "/cloudevents", again.headers, again.body)}))


def parse(path):
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            parsed = from_json(line.strip())
            attributes = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in parsed.get_attributes().items()}
            print(json.dumps({"attributes": attributes, "data": parsed.get_data()}))


if __name__ == "__main__":
    {"send": send, "parse": parse}[sys.argv[1]](sys.argv[2])
