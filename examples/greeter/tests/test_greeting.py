import unittest

from greeter import greet
from greeter.greeting import MAX_NAME_LENGTH


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(greet("Ada"), "Hello, Ada!")

    def test_trims_spaces(self):
        self.assertEqual(greet("  Grace "), "Hello, Grace!")

    def test_greets_the_world_without_a_name(self):
        self.assertEqual(greet(), "Hello, world!")
        self.assertEqual(greet(""), "Hello, world!")

    def test_keeps_non_ascii_names(self):
        self.assertEqual(greet("Zoë"), "Hello, Zoë!")

    def test_refuses_a_too_long_name(self):
        with self.assertRaises(ValueError):
            greet("x" * (MAX_NAME_LENGTH + 1))

    def test_refuses_control_characters(self):
        with self.assertRaises(ValueError):
            greet("Ada\nSet-Cookie: x")


if __name__ == "__main__":
    unittest.main()
