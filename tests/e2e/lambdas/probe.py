"""A tiny function the executor tests deploy: it sleeps, exits, fails or reports its version."""

import json
import os
import time

VERSION = "v1"


def handler(event, context):
    print(f"probe invoked: {json.dumps(event)}")
    if event.get("sleepSeconds"):
        time.sleep(event["sleepSeconds"])
    if event.get("exit"):
        os._exit(1)
    return {"pid": os.getpid(), "version": VERSION, "remainingMs": context.get_remaining_time_in_millis()}


def batch_handler(event, context):
    """SQS consumer: fails every record whose body is "poison", processes the rest."""
    failures = []
    for record in event["Records"]:
        print(f"record {record['body']} receive={record['attributes']['ApproximateReceiveCount']}")
        if record["body"] == "poison":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
