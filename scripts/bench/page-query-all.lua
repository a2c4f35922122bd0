-- wrk script: the JSON query behind the discovery page's front page `GET /` (everything, one page).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{}'
