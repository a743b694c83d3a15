"""The greeter API over real HTTP, at $GREETER_URL (the `api` service in the pipeline)."""

import json
import os
import unittest
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ.get("GREETER_URL", "http://api:8080").rstrip("/")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def get(path):
    try:
        with OPENER.open(URL + path, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), json.load(resp)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get("Content-Type"), json.load(err)


class GreeterApiTest(unittest.TestCase):
    def test_greets_by_name(self):
        status, content_type, body = get("/greet?name=Ada")
        self.assertEqual(status, 200)
        self.assertEqual(content_type, "application/json")
        self.assertEqual(body, {"message": "Hello, Ada!"})

    def test_greets_a_url_encoded_name(self):
        query = urllib.parse.urlencode({"name": "Zoë Smith"})
        self.assertEqual(get("/greet?" + query)[2], {"message": "Hello, Zoë Smith!"})

    def test_refuses_a_bad_name(self):
        status, _, body = get("/greet?name=" + "x" * 100)
        self.assertEqual(status, 400)
        self.assertIn("error", body)

    def test_health(self):
        status, _, body = get("/health")
        self.assertEqual((status, body), (200, {"status": "ok"}))


if __name__ == "__main__":
    unittest.main()
