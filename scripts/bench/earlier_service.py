#!/usr/bin/env python3
"""A stand-in for the earlier Python service, for the benchmark's comparison only: written here,
not copied, to answer the two requests the benchmark sends the way that service did.

That service was a Flask app over pymongo. A query was `collection.find(filter)` with the request
body as the filter, `_id` popped from every document, the whole list returned at once in
`{"success": true, "data": [...]}` (no paging), with one INFO log line per query; a create was
`insert_one` of the posted document. It ran under Flask's own development server (`app.run`, which
serves each connection in its own thread). Here the collection is mongomock's (the same
`find`/`insert_one` API, in memory, no MongoDB server), and the server is the same Werkzeug
development server, threaded.

  earlier_service.py            listens on 127.0.0.1, a free port; prints the URL
"""

import logging

import mongomock
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

logging.basicConfig(level=logging.INFO)
log = logging.getLogger("earlier_service")

app = Flask(__name__)
collection = mongomock.MongoClient()["assets"]["container_registry"]


@app.route("/container_registry", methods=["POST"])
def create():
    result = collection.insert_one(dict(request.json))
    return jsonify({"success": True, "data": {"message": "Container registry created", "id": str(result.inserted_id)}}), 201


@app.route("/container_registries", methods=["POST"])
def query():
    documents = []
    for doc in collection.find(request.json):
        doc.pop("_id", None)
        documents.append(doc)
    log.info("Query successful, found %d documents", len(documents))
    return jsonify({"success": True, "data": documents}), 200


if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"earlier-service listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
