"""reshard: the whole matrix (reshard_suite.py) for the 'mlp' fixtures."""

import unittest

import reshard_suite

ReshardMatrix = reshard_suite.make_suite("mlp")

if __name__ == "__main__":
    unittest.main()
