-- wrk script: the JSON query behind the discovery page `GET /?tag=gpu` (same filter, same page size).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"container_registry_tags": {"$all": ["gpu"]}}'
