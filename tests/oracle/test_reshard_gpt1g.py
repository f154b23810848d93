"""reshard: the whole matrix (reshard_suite.py) for the 'gpt1g' fixtures."""

import unittest

import reshard_suite

ReshardMatrix = reshard_suite.make_suite("gpt1g")

if __name__ == "__main__":
    unittest.main()
