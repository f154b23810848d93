"""reshard: the whole matrix (reshard_suite.py) for the 'gpt' fixtures."""

import unittest

import reshard_suite

ReshardMatrix = reshard_suite.make_suite("gpt")

if __name__ == "__main__":
    unittest.main()
