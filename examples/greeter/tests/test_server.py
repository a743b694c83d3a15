"""The HTTP handler, against a real server in a thread on a free loopback port."""

import json
import threading
import unittest
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from greeter.server import GreeterHandler

# Talk to the server directly, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class QuietHandler(GreeterHandler):
    def log_message(self, *args):  # keep the test output free of access logs
        pass


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        host, port = cls.server.server_address[:2]
        cls.base = f"http://{host}:{port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.thread.join()

    def get(self, path):
        try:
            with OPENER.open(self.base + path, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.load(err)

    def test_greet(self):
        self.assertEqual(self.get("/greet?name=Ada"), (200, {"message": "Hello, Ada!"}))

    def test_greet_without_a_name(self):
        self.assertEqual(self.get("/greet"), (200, {"message": "Hello, world!"}))

    def test_bad_name_is_a_400(self):
        status, body = self.get("/greet?name=" + "x" * 100)
        self.assertEqual(status, 400)
        self.assertIn("longer than", body["error"])

    def test_health(self):
        self.assertEqual(self.get("/health"), (200, {"status": "ok"}))

    def test_unknown_path_is_a_404(self):
        self.assertEqual(self.get("/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
