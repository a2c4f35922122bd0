-- wrk script: POST a tag query to /container_registries.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"container_registry_tags": {"$in": ["gpu"]}}'
